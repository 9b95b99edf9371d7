/**
 * `arc-ttft join`: per-task prediction files → one complete Kaggle submission.
 *
 * @module
 */
import { Command, Option } from 'commander';
import { loadTasks } from '../../data/load.js';
import { joinPredictions, readPredictionFolder, writeSubmission } from '../../data/split.js';
import { ArcTtftError } from '../../errors.js';

interface JoinFlags {
  tasks: string;
  predictions: string;
  out: string;
  fallback: 'input' | 'zeros';
  pretty?: boolean;
}

/** Builds the `join` subcommand. */
export function joinCommand(): Command {
  return new Command('join')
    .description('join per-task prediction files into one Kaggle submission, filling gaps with a fallback')
    .requiredOption(
      '-t, --tasks <path>',
      'the tasks: Kaggle challenges file or folder of <id>.json task files',
    )
    .requiredOption(
      '-p, --predictions <dir>',
      'folder of <id>.json prediction files ([{attempt_1, attempt_2}, …])',
    )
    .requiredOption('-o, --out <file>', 'submission file to write (e.g. submission.json)')
    .addOption(
      new Option('--fallback <mode>', 'what fills test inputs without a prediction')
        .choices(['input', 'zeros'])
        .default('input'),
    )
    .option('--pretty', 'indent the file, one grid row per line')
    .action(async (flags: JoinFlags) => {
      try {
        const { tasks } = await loadTasks(flags.tasks);
        const predictions = await readPredictionFolder(flags.predictions);
        const { submission, filled } = joinPredictions(tasks, predictions, { fallback: flags.fallback });
        await writeSubmission(flags.out, submission, { pretty: flags.pretty === true });
        const entries = Object.values(submission).reduce((n, list) => n + list.length, 0);
        const tasksFilled = new Set(filled.map((f) => f.taskId)).size;
        process.stdout.write(
          `wrote ${flags.out}: ${Object.keys(submission).length} tasks, ${entries} entries; ` +
            `${filled.length} entries (in ${tasksFilled} tasks) filled by fallback "${flags.fallback}"\n`,
        );
      } catch (error) {
        if (!(error instanceof ArcTtftError)) throw error;
        process.stderr.write(`error: ${error.message}\n`);
        process.exitCode = 1;
      }
    });
}
