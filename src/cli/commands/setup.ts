/**
 * `arc-ttft setup`: create (or reuse) the engine's Python venv and install its pinned requirements.
 *
 * @module
 */
import { Command } from 'commander';
import { ensurePythonEnv } from '../../setup/env.js';
import { nonEmpty, printError } from '../args.js';

interface SetupFlags {
  venv?: string;
  python?: string;
  requirements?: string;
  force?: boolean;
  ray?: boolean;
  quiet?: boolean;
}

/** Builds the `setup` subcommand: progress on stderr, the venv's python path on stdout. */
export function setupCommand(): Command {
  return new Command('setup')
    .description('create the Python venv for the engine and install its pinned requirements')
    .option('--venv <dir>', 'venv folder (default: $ARC_TTFT_VENV, else a per-user cache folder)', nonEmpty)
    .option(
      '--python <bin>',
      'base Python 3.10+ that creates the venv (default: $PYTHON_BIN, else python3)',
      nonEmpty,
    )
    .option(
      '--requirements <file>',
      "requirements file (default: the package's python/requirements.txt)",
      nonEmpty,
    )
    .option('--force', 'delete and recreate the venv even when it is up to date')
    .option('--ray', 'also install Ray, to run tasks on Ray workers (run --ray)')
    .option('-q, --quiet', 'print only the python path')
    .action(async (flags: SetupFlags) => {
      try {
        const env = await ensurePythonEnv(
          {
            venvDir: flags.venv,
            pythonBin: flags.python,
            requirementsFile: flags.requirements,
            force: flags.force === true,
            extras: flags.ray === true ? ['ray'] : [],
          },
          flags.quiet === true ? undefined : (line) => process.stderr.write(`${line}\n`),
        );
        if (flags.quiet !== true) {
          const what = env.reused ? 'up to date' : env.created ? 'created' : 'updated';
          process.stderr.write(`venv ${what}: ${env.venvDir} (Python ${env.pythonVersion})\n`);
          process.stderr.write(`use it with: export PYTHON_BIN=${env.python}\n`);
        }
        process.stdout.write(`${env.python}\n`);
      } catch (error) {
        printError(error);
      }
    });
}
