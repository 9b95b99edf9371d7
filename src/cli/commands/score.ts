/**
 * `arc-ttft score`: a Kaggle submission + solutions → the Kaggle score and arc24's metrics.
 *
 * @module
 */
import { Command } from 'commander';
import { loadSolutions, loadSubmission } from '../../data/load.js';
import { formatScoreTable, scoreSubmission } from '../../score.js';
import { nonEmpty, printError } from '../args.js';

interface ScoreFlags {
  submission: string;
  solutions: string;
  json?: boolean;
  perTask?: boolean;
  allowMissing?: boolean;
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
        const report = scoreSubmission(submission, solutions, { allowMissing: flags.allowMissing === true });
        const text = flags.json
          ? JSON.stringify(report, null, 2)
          : formatScoreTable(report, { perTask: flags.perTask === true });
        process.stdout.write(`${text}\n`);
      } catch (error) {
        printError(error);
      }
    });
}
