/**
 * The fixed task list of the accuracy study (`bench/accuracy/tasks.json`) and the rule that makes it.
 *
 * Rule: of the ARC-AGI-1 evaluation tasks, keep those whose compact-format prompt fits 2,048 tokens
 * (the embedded model's context) with **every** train pair, for every test input — the prompt, the
 * longest possible answer and the EOS, counted one token per character exactly as the run's token budget
 * does (`fitTask` with `charCount`). Sort them by that worst-case length, smallest first (ties by id),
 * and take the first 60. Small tasks keep the CPU time down; keeping all pairs means no task is changed
 * by the budget.
 *
 * Regenerate: `npx tsx bench/accuracy/tasks.ts` (writes bench/accuracy/tasks.json; `--check` only
 * compares and exits 1 on a difference).
 *
 * @module
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { charCount, fitTask } from '../../src/budget.js';
import { loadTasks } from '../../src/data/load.js';
import { parseOptions, parseWith } from '../../src/data/validate.js';
import { FileError } from '../../src/errors.js';
import type { TaskSet } from '../../src/schemas.js';

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** The ARC-AGI-1 evaluation folder the study draws from (read-only, beside the repository). */
export const ARC1_EVALUATION = resolve(ROOT, '../shared/arc-data/arc-agi-1/evaluation');
/** Where the task list is kept. */
export const TASKS_FILE = join(ROOT, 'bench/accuracy/tasks.json');

/** Options of {@link selectStudyTasks}. */
export const SelectOptionsSchema = z.strictObject({
  /**
   * Most tokens of one sequence: the embedded model's context.
   * @default 2048
   */
  maxSeqLen: z.number().int().positive().default(2048),
  /**
   * How many tasks to keep (the smallest).
   * @default 60
   */
  count: z.number().int().positive().default(60),
});
/** Options of {@link selectStudyTasks}. */
export type SelectOptions = z.input<typeof SelectOptionsSchema>;

/** One task of the list. */
export interface StudyTask {
  /** Task id (the file name in the evaluation folder). */
  readonly id: string;
  /** Worst case over the test inputs: compact prompt with every train pair + longest answer + EOS. */
  readonly tokens: number;
  /** Train pairs. */
  readonly train: number;
  /** Test inputs. */
  readonly test: number;
}

/** The content of tasks.json. */
export interface TaskList {
  /** The rule, in words. */
  readonly rule: string;
  /** The command that regenerates the file. */
  readonly generatedBy: string;
  /** The source folder, relative to the repository root. */
  readonly source: string;
  /** Prompt format the tokens are counted in. */
  readonly format: 'compact';
  /** The context the tasks fit. */
  readonly maxSeqLen: number;
  /** Tasks in the source, and how many fit with every pair. */
  readonly candidates: { readonly total: number; readonly fitAllPairs: number };
  /** The chosen tasks, smallest first. */
  readonly tasks: readonly StudyTask[];
}

/** The rule in words (kept in tasks.json and in docs/results.md). */
export function describeRule(o: { maxSeqLen: number; count: number }): string {
  return (
    `ARC-AGI-1 evaluation tasks whose compact-format prompt fits ${o.maxSeqLen} tokens with every train ` +
    'pair for every test input as given (prompt + longest possible answer + EOS, one token per character, as ' +
    `the run's token budget counts), sorted by that worst-case length (smallest first, ties by id); the first ${o.count}.`
  );
}

/**
 * Applies the rule to a task set: pure, deterministic, no engine (the compact format is one token per
 * character). Returns the chosen tasks and how many fit at all.
 */
export async function selectStudyTasks(
  tasks: TaskSet,
  options?: SelectOptions,
): Promise<{ tasks: StudyTask[]; fitAllPairs: number }> {
  const o = parseOptions(SelectOptionsSchema, options, 'selectStudyTasks');
  const fitting: StudyTask[] = [];
  for (const [id, task] of Object.entries(tasks)) {
    const fit = await fitTask(task, charCount, {
      format: 'compact',
      maxSeqLen: o.maxSeqLen,
      strategy: 'largest-first',
      taskId: id,
      // As given: the rule the study's list was drawn with (its 60 tasks fit transposed too, at most 642 tokens).
      transposed: false,
    });
    if (!fit.fits || fit.dropped.length > 0) continue;
    fitting.push({ id, tokens: fit.tokensAllPairs, train: task.train.length, test: task.test.length });
  }
  fitting.sort((a, b) => a.tokens - b.tokens || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  return { tasks: fitting.slice(0, o.count), fitAllPairs: fitting.length };
}

/** Builds the task list from the evaluation folder. */
export async function buildTaskList(dir = ARC1_EVALUATION, options?: SelectOptions): Promise<TaskList> {
  const o = parseOptions(SelectOptionsSchema, options, 'buildTaskList');
  const { tasks } = await loadTasks(dir);
  const chosen = await selectStudyTasks(tasks, o);
  return {
    rule: describeRule(o),
    generatedBy: 'npx tsx bench/accuracy/tasks.ts',
    source: '../shared/arc-data/arc-agi-1/evaluation',
    format: 'compact',
    maxSeqLen: o.maxSeqLen,
    candidates: { total: Object.keys(tasks).length, fitAllPairs: chosen.fitAllPairs },
    tasks: chosen.tasks,
  };
}

const TaskListSchema = z.object({
  rule: z.string(),
  generatedBy: z.string(),
  source: z.string(),
  format: z.literal('compact'),
  maxSeqLen: z.number().int().positive(),
  candidates: z.object({ total: z.number().int(), fitAllPairs: z.number().int() }),
  tasks: z
    .array(
      z.object({
        id: z.string().min(1),
        tokens: z.number().int(),
        train: z.number().int(),
        test: z.number().int(),
      }),
    )
    .min(1),
});

/** Reads and checks a task list file. @throws {ValidationError} / {FileError} */
export function readTaskList(path = TASKS_FILE): TaskList {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new FileError({ path, message: 'cannot read the task list', cause: error });
  }
  return parseWith(TaskListSchema, value, { source: path });
}

/** The file text: one task per line, so a diff shows which tasks changed. */
export function formatTaskList(list: TaskList): string {
  const { tasks, ...head } = list;
  const headText = JSON.stringify(head, null, 2).slice(0, -2);
  const rows = tasks.map(
    (t) =>
      `    { "id": ${JSON.stringify(t.id)}, "tokens": ${t.tokens}, "train": ${t.train}, "test": ${t.test} }`,
  );
  return `${headText},\n  "tasks": [\n${rows.join(',\n')}\n  ]\n}\n`;
}

async function main(argv: string[]): Promise<void> {
  const list = await buildTaskList();
  const text = formatTaskList(list);
  if (argv.includes('--check')) {
    const current = readFileSync(TASKS_FILE, 'utf8');
    if (current !== text) {
      process.stderr.write(
        `${TASKS_FILE} differs from what the rule gives; run npx tsx bench/accuracy/tasks.ts\n`,
      );
      process.exitCode = 1;
      return;
    }
    process.stdout.write(`${TASKS_FILE} is up to date (${list.tasks.length} tasks)\n`);
    return;
  }
  writeFileSync(TASKS_FILE, text);
  const last = list.tasks.at(-1);
  process.stdout.write(
    `wrote ${TASKS_FILE}: ${list.tasks.length} of ${list.candidates.fitAllPairs} tasks that fit with every pair ` +
      `(of ${list.candidates.total}); largest ${last?.tokens ?? 0} tokens\n`,
  );
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main(process.argv.slice(2));
}
