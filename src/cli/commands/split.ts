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
        const { tasks } = await loadTasks(challenges, { solutions: flags.solutions });
        const paths = await splitTaskSet(tasks, flags.out, { pretty: flags.pretty === true });
        const solved = Object.values(tasks).filter((t) => t.test.every((p) => p.output !== undefined)).length;
        process.stdout.write(
          `wrote ${paths.length} task files to ${flags.out} (${solved} with test outputs)\n`,
        );
      } catch (error) {
        printError(error);
      }
    });
}
