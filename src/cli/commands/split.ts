/**
 * `arc-ttft split`: a Kaggle challenges file (plus optional solutions) → one `<id>.json` per task.
 *
 * @module
 */
import { Command } from 'commander';
import { loadTasks } from '../../data/load.js';
import { splitTaskSet } from '../../data/split.js';
import { nonEmpty, printError } from '../args.js';

interface SplitFlags {
  out: string;
  solutions?: string;
  pretty?: boolean;
}

/** Builds the `split` subcommand. */
export function splitCommand(): Command {
  return new Command('split')
    .description('write one <id>.json task file per task of a challenges file (or folder, or task file)')
    .argument(
      '<challenges>',
      'Kaggle challenges file, folder of <id>.json task files, or one task file',
      nonEmpty,
    )
    .requiredOption('-o, --out <dir>', 'folder to write the task files to (created if missing)', nonEmpty)
    .option('-s, --solutions <file>', 'Kaggle solutions file whose grids become the test outputs', nonEmpty)
    .option('--pretty', 'indent the files, one grid row per line')
    .action(async (challenges: string, flags: SplitFlags) => {
      try {
        // One bad task does not cost the others their files (as run and join go on); each is reported.
        const { tasks, errors } = await loadTasks(challenges, {
          solutions: flags.solutions,
          mode: 'lenient',
        });
        const paths = await splitTaskSet(tasks, flags.out, { pretty: flags.pretty === true });
        for (const error of errors) process.stderr.write(`invalid task: ${error.message}\n`);
        // Nothing to write at all is a failure, as `run` fails with no valid task.
        if (paths.length === 0 && errors.length > 0) process.exitCode = 1;
        const solved = Object.values(tasks).filter((t) => t.test.every((p) => p.output !== undefined)).length;
        process.stdout.write(
          `wrote ${paths.length} task files to ${flags.out} (${solved} with test outputs)` +
            (errors.length > 0 ? `; ${errors.length} invalid task(s) not written, on stderr` : '') +
            '\n',
        );
      } catch (error) {
        printError(error);
      }
    });
}
