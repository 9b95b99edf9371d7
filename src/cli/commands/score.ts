/**
 * `arc-ttft score`: a Kaggle submission + solutions → the Kaggle score and arc24's metrics.
 *
 * @module
 */
import { Command } from 'commander';
import { loadSolutions, loadSubmission } from '../../data/load.js';
import { ValidationError } from '../../errors.js';
import { formatScoreTable, scoreSubmission } from '../../score.js';
import { nonEmpty, printError } from '../args.js';

interface ScoreFlags {
  submission: string;
  solutions: string;
  json?: boolean;
  perTask?: boolean;
  allowMissing?: boolean;
}

/**
 * The scorer names its input `submission`; on the command line the file's path says more, and a missing
 * task or entry can be scored as wrong with `--allow-missing`.
 */
function inSubmissionFile(error: unknown, flags: ScoreFlags): unknown {
  if (!(error instanceof ValidationError) || error.source !== 'submission') return error;
  const first = error.issues[0]?.message ?? '';
  const missing = !flags.allowMissing && (first === 'missing task' || first.startsWith('missing entry'));
  // A function, not a string: `$&` in a path would be read as a replacement pattern.
  const message = error.message.replace(/^submission/, () => flags.submission);
  return new ValidationError({
    message: missing ? `${message} (--allow-missing scores what is missing as wrong)` : message,
    taskId: error.taskId,
    source: flags.submission,
    issues: error.issues,
    cause: error,
  });
}

/** Builds the `score` subcommand. */
export function scoreCommand(): Command {
  return new Command('score')
    .description('score a Kaggle submission against a solutions file (Kaggle score + arc24 metrics)')
    .requiredOption(
      '-s, --submission <file>',
      'submission file ({id: [{attempt_1, attempt_2}, …]})',
      nonEmpty,
    )
    .requiredOption('--solutions <file>', 'Kaggle solutions file ({id: [grid, …]})', nonEmpty)
    .option('--json', 'print the full report as JSON (nothing else on stdout)')
    .option('--per-task', 'add one row per task to the table')
    .option(
      '--allow-missing',
      'score tasks or test inputs missing from the submission as wrong instead of failing',
    )
    .action(async (flags: ScoreFlags) => {
      try {
        const [submission, solutions] = await Promise.all([
          loadSubmission(flags.submission),
          loadSolutions(flags.solutions),
        ]);
        let report: ReturnType<typeof scoreSubmission>;
        try {
          report = scoreSubmission(submission, solutions, { allowMissing: flags.allowMissing === true });
        } catch (error) {
          throw inSubmissionFile(error, flags);
        }
        const text = flags.json
          ? JSON.stringify(report, null, 2)
          : formatScoreTable(report, { perTask: flags.perTask === true });
        process.stdout.write(`${text}\n`);
      } catch (error) {
        printError(error);
      }
    });
}
