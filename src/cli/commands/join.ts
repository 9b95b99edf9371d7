/**
 * `arc-ttft join`: per-task prediction files → one complete Kaggle submission.
 *
 * @module
 */

import { realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { writeTarget } from '../../data/fs.js';
import { loadTasks, withLeftOutTasks } from '../../data/load.js';
import { joinPredictions, type Predictions, readPredictionFiles, writeSubmission } from '../../data/split.js';
import { setEntry } from '../../data/validate.js';
import { ValidationError } from '../../errors.js';
import { nonEmpty, printError } from '../args.js';

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
      'the tasks: Kaggle challenges file, folder of <id>.json task files, or one task file',
      nonEmpty,
    )
    .requiredOption(
      '-p, --predictions <dir>',
      'folder of <id>.json prediction files ([{attempt_1, attempt_2}, …])',
      nonEmpty,
    )
    .requiredOption('-o, --out <file>', 'submission file to write (e.g. submission.json)', nonEmpty)
    .addOption(
      new Option('--fallback <mode>', 'what fills test inputs without a prediction')
        .choices(['input', 'zeros'])
        .default('input'),
    )
    .option('--pretty', 'indent the file, one grid row per line')
    .action(async (flags: JoinFlags) => {
      try {
        // The file the write would replace (through links) must not be the tasks file, or in the tasks folder.
        const target = await writeTarget(flags.out);
        const rel = relative(await realpath(flags.tasks).catch(() => resolve(flags.tasks)), target);
        if (!rel.startsWith('..') && !isAbsolute(rel)) {
          throw new ValidationError({
            source: flags.out,
            issues: [
              {
                path: '',
                message: `--out would replace ${rel === '' ? 'the tasks file' : 'a file in the tasks folder'} (${target})`,
              },
            ],
          });
        }
        // Nothing is lost to one bad input: a task that cannot be loaded, or whose prediction file is bad,
        // gets the fallback (as `run` does), and each problem is reported.
        const loaded = await loadTasks(flags.tasks, { mode: 'lenient' });
        const tasks = withLeftOutTasks(loaded.tasks, loaded.leftOutTests);
        const read = await readPredictionFiles(flags.predictions);
        const problems = [
          ...loaded.errors.map((e) => `invalid task: ${e.message}`),
          ...read.errors.map((e) => `bad prediction file: ${e.message}`),
        ];
        const predictions: Predictions = {};
        for (const [id, given] of Object.entries(read.predictions)) {
          const entries = given ?? [];
          const task = Object.hasOwn(tasks, id) ? tasks[id] : undefined;
          if (task === undefined) {
            const invalid = loaded.errors.some((e) => e instanceof ValidationError && e.taskId === id);
            problems.push(
              invalid
                ? `predictions for invalid task ${id}, whose test inputs cannot be read, left out`
                : `predictions for a task that is not in the tasks, left out: ${id}`,
            );
          } else if (entries.length > task.test.length) {
            problems.push(
              `bad prediction file: task "${id}": ${entries.length} entries for ${task.test.length} test input(s); the fallback answers it`,
            );
          } else setEntry<Predictions[string]>(predictions, id, entries);
        }
        const { submission, filled } = joinPredictions(tasks, predictions, { fallback: flags.fallback });
        await writeSubmission(flags.out, submission, { pretty: flags.pretty === true });
        for (const line of problems) process.stderr.write(`${line}\n`);
        const entries = Object.values(submission).reduce((n, list) => n + list.length, 0);
        const tasksFilled = new Set(filled.map((f) => f.taskId)).size;
        process.stdout.write(
          `wrote ${flags.out}: ${Object.keys(submission).length} tasks, ${entries} entries; ` +
            `${filled.length} entries (in ${tasksFilled} tasks) filled by fallback "${flags.fallback}"` +
            (problems.length > 0 ? `; ${problems.length} problem(s), on stderr` : '') +
            '\n',
        );
      } catch (error) {
        printError(error);
      }
    });
}
