/**
 * Loading ARC tasks, solutions and submissions from disk (or from in-memory objects), validated, with
 * errors that name the task id, the source file and the JSON path of the offending field.
 *
 * @module
 */
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { z } from 'zod';
import { ArcTtftError, FileError, ValidationError } from '../errors.js';
import {
  AttemptsSchema,
  type Grid,
  GridSchema,
  type Solutions,
  type Submission,
  type Task,
  TaskIdSchema,
  type TaskSet,
} from '../schemas.js';
import {
  describeFsError,
  filesById,
  listJsonFiles,
  mapConcurrent,
  readJsonFile,
  readJsonFileWithText,
  topLevelKeys,
} from './fs.js';
import {
  entryPath,
  expectRecord,
  expectTests,
  isRecord,
  parseOptions,
  parseWith,
  setEntry,
  validateTask,
  validateTaskId,
} from './validate.js';

/** Files read at once when loading a folder: enough to hide latency, few enough to spare file handles. */
const READ_CONCURRENCY = 16;

/** Options of {@link loadTasks}. */
export const LoadOptionsSchema = z.object({
  /** Path of a Kaggle solutions file (`{id: [grid, …]}`) whose grids become the tasks' test outputs. */
  solutions: z.string().min(1).optional(),
  /**
   * `'strict'` throws the first error; `'lenient'` returns every good task plus one error per bad task.
   * @default 'strict'
   */
  mode: z.enum(['strict', 'lenient']).default('strict'),
  /** Load only these task ids (kept in source order); an id that is not in the source is an error. */
  only: z.array(z.string()).optional(),
  /** Load at most this many tasks (the first ones in the file's order, after `only`, as other tools count them). */
  limit: z.number().int().positive().optional(),
});
/** Options of {@link loadTasks}. */
export type LoadOptions = z.input<typeof LoadOptionsSchema>;

/** Which layout a task source had. */
export type LoadFormat = 'folder' | 'challenges' | 'task';

/** An error about one task (or one task's file) found while loading. */
export type LoadError = ValidationError | FileError;

/** What {@link loadTasks} found. */
export interface LoadResult {
  /**
   * The valid tasks, by id, in source order (folders: sorted by file name), except that a JavaScript object lists
   * all-digit ids first.
   */
  readonly tasks: TaskSet;
  /** One error per task that was left out (always empty in `'strict'` mode, which throws instead). */
  readonly errors: readonly LoadError[];
  /**
   * The test inputs of the tasks left out, where they can still be read: for each such task (a valid id whose
   * `test` is a non-empty array), one entry per test input, the grid when it is valid, else `null`. A run gives
   * these tasks fallback answers, so that a Kaggle submission still has every task id of the file.
   */
  readonly leftOutTests: Readonly<Record<string, readonly (Grid | null)[]>>;
  /** The path that was loaded. */
  readonly source: string;
  /** The layout detected at `source`. */
  readonly format: LoadFormat;
}

/**
 * Loads ARC tasks from `path`, detecting its layout: a folder of `<id>.json` task files, a Kaggle
 * challenges file (`{id: {train, test}}`), or a single task file (`{train, test}`, id = file name).
 *
 * @throws {FileError} when `path` (or the solutions file) is missing, unreadable or not JSON.
 * @throws {ValidationError} in `'strict'` mode, for the first bad task, naming its id, file and field.
 */
export async function loadTasks(path: string, options?: LoadOptions): Promise<LoadResult> {
  const o = parseOptions(LoadOptionsSchema, options, 'loadTasks');
  const sink = new ErrorSink(o.mode);
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    throw new FileError({ path, message: describeFsError(error, 'read'), cause: error });
  }

  let tasks: TaskSet;
  let format: LoadFormat;
  if (info.isDirectory()) {
    format = 'folder';
    tasks = await loadFolder(path, o, sink);
  } else {
    const { value, text } = await readJsonFileWithText(path);
    if (isTaskShaped(value)) {
      format = 'task';
      const id = basename(path).replace(/\.json$/i, '');
      const ids = select([id], o, sink, path);
      tasks = {};
      if (ids.length > 0) {
        sink.attemptTask(id, value, () => {
          const task = validateTask(value, { taskId: validateTaskId(id, { source: path }), source: path });
          setEntry(tasks, id, task);
        });
      }
    } else {
      format = 'challenges';
      tasks = validateChallenges(value, path, o, sink, topLevelKeys(text));
    }
  }

  if (o.solutions !== undefined) {
    const { value, text } = await readJsonFileWithText(o.solutions);
    const solutionsSource = o.solutions;
    const entries = idRecordEntries(value, solutionsSource, 'solutions');
    checkSolutionsMatch(Object.keys(tasks), [...entries.keys()], solutionsSource);
    const duplicates = new Set(topLevelKeys(text).duplicates);
    const merged: TaskSet = {};
    for (const [id, task] of Object.entries(tasks)) {
      sink.attemptTask(id, task, () => {
        if (duplicates.has(id)) throw duplicateIdError(id, solutionsSource);
        const raw = entries.get(id);
        if (raw === undefined) {
          setEntry(merged, id, task);
          return;
        }
        const outputs = parseWith(OutputsSchema, raw, {
          taskId: id,
          source: solutionsSource,
          pathPrefix: entryPath(id),
        });
        setEntry(merged, id, mergeOne(id, task, outputs, solutionsSource));
      });
    }
    tasks = merged;
  }

  return { tasks, errors: sink.errors, leftOutTests: sink.leftOutTests, source: path, format };
}

/** Options of {@link loadTaskSetFromObject}. */
export const LoadObjectOptionsSchema = z.object({
  /**
   * Where the object came from, for error messages.
   * @default '(object)'
   */
  source: z.string().default('(object)'),
});
/** Options of {@link loadTaskSetFromObject}. */
export type LoadObjectOptions = z.input<typeof LoadObjectOptionsSchema>;

/**
 * Validates an in-memory challenges-shaped object (`{id: {train, test}}`) into a {@link TaskSet}. Pure.
 * The result is a validated copy (unknown fields dropped).
 *
 * @throws {ValidationError} for the first bad task id or task, naming the id and field.
 */
export function loadTaskSetFromObject(value: unknown, options?: LoadObjectOptions): TaskSet {
  const o = parseOptions(LoadObjectOptionsSchema, options, 'loadTaskSetFromObject');
  return validateChallenges(value, o.source, {}, new ErrorSink('strict'), NO_KEYS);
}

/**
 * {@link loadTaskSetFromObject} in lenient mode, with `only` and `limit` as {@link loadTasks} takes them: the good
 * tasks, one error per bad one, and the bad ones' readable test inputs (what a run does with a task set object).
 * @internal
 */
export function loadTaskSetLeniently(
  value: unknown,
  o: Selection & { source: string },
): Pick<LoadResult, 'tasks' | 'errors' | 'leftOutTests'> {
  const sink = new ErrorSink('lenient');
  const tasks = validateChallenges(value, o.source, o, sink, NO_KEYS);
  return { tasks, errors: sink.errors, leftOutTests: sink.leftOutTests };
}

/** Options of {@link mergeSolutions}. */
export const MergeSolutionsOptionsSchema = z.object({
  /**
   * Where the solutions came from, for error messages.
   * @default '(solutions)'
   */
  source: z.string().default('(solutions)'),
});
/** Options of {@link mergeSolutions}. */
export type MergeSolutionsOptions = z.input<typeof MergeSolutionsOptionsSchema>;

/**
 * Returns a copy of `tasks` whose test outputs are taken from `solutions`. Tasks without solutions are
 * kept as they are; solutions for ids not in `tasks` are ignored. Pure.
 *
 * @throws {ValidationError} naming the task and field for an output that is not a grid, and `test[i].output`
 * when a task's count of outputs differs from its count of test inputs.
 */
export function mergeSolutions(
  tasks: TaskSet,
  solutions: Solutions,
  options?: MergeSolutionsOptions,
): TaskSet {
  const o = parseOptions(MergeSolutionsOptionsSchema, options, 'mergeSolutions');
  expectRecord(tasks, 'tasks', 'mergeSolutions');
  expectRecord(solutions, 'solutions', o.source);
  checkSolutionsMatch(Object.keys(tasks), Object.keys(solutions), o.source);
  const out: TaskSet = {};
  for (const [id, task] of Object.entries(tasks)) {
    expectTests(task, id, 'tasks');
    const given = Object.hasOwn(solutions, id) ? solutions[id] : undefined;
    // Checked as loadSolutions checks a file: a typed Solutions can still hold anything at run time.
    const outputs =
      given === undefined
        ? undefined
        : parseWith(OutputsSchema, given, { taskId: id, source: o.source, pathPrefix: entryPath(id) });
    setEntry(out, id, outputs === undefined ? task : mergeOne(id, task, outputs, o.source));
  }
  return out;
}

/**
 * Loads and validates a Kaggle submission file (`{id: [{attempt_1, attempt_2}, …]}`).
 *
 * @throws {FileError} when the file is missing, unreadable or not JSON.
 * @throws {ValidationError} naming the task id and path, e.g. `["abc"][0].attempt_1[2]`; also for a task
 * id that occurs twice in the file.
 */
export async function loadSubmission(path: string): Promise<Submission> {
  const { value, text } = await readJsonFileWithText(path);
  return parseIdRecord(value, path, EntriesSchema, 'submission', topLevelKeys(text).duplicates);
}

/**
 * Loads and validates a Kaggle solutions file (`{id: [grid, …]}`).
 *
 * @throws {FileError} when the file is missing, unreadable or not JSON.
 * @throws {ValidationError} naming the task id and path, e.g. `["abc"][0][3]`; also for a duplicate id.
 */
export async function loadSolutions(path: string): Promise<Solutions> {
  const { value, text } = await readJsonFileWithText(path);
  return parseIdRecord(value, path, OutputsSchema, 'solutions', topLevelKeys(text).duplicates);
}

/** Options of {@link parseSubmission} and {@link parseSolutions}. */
export const ParseSourceOptionsSchema = z.object({
  /** Where the value came from, for error messages. */
  source: z.string().optional(),
});
/** Options of {@link parseSubmission} and {@link parseSolutions}. */
export type ParseSourceOptions = z.input<typeof ParseSourceOptionsSchema>;

/** Validates an in-memory submission object; errors name the task and path like `["abc"][0].attempt_1`. Pure. */
export function parseSubmission(value: unknown, options?: ParseSourceOptions): Submission {
  const o = parseOptions(ParseSourceOptionsSchema, options, 'parseSubmission');
  return parseIdRecord(value, o.source, EntriesSchema, 'submission', []);
}

/** Validates an in-memory solutions object; errors name the task and path like `["abc"][0][3]`. Pure. */
export function parseSolutions(value: unknown, options?: ParseSourceOptions): Solutions {
  const o = parseOptions(ParseSourceOptionsSchema, options, 'parseSolutions');
  return parseIdRecord(value, o.source, OutputsSchema, 'solutions', []);
}

// ---------------------------------------------------------------------------------------------------------
// internals

const EntriesSchema = z
  .array(AttemptsSchema, { error: 'expected an array of {attempt_1, attempt_2}' })
  .min(1, {
    error: 'a task needs at least 1 entry (one per test input)',
  });
/** `[[1, 2], [3, 4]]`: one grid where the solutions hold a list of grids (one per test input). */
function isBareGrid(value: unknown): boolean {
  return Array.isArray(value) && Array.isArray(value[0]) && typeof value[0][0] === 'number';
}
const OutputsSchema = z
  .unknown()
  // Named as the mix-up it is: the array check alone would say "a row must be an array of cells".
  .superRefine((value, ctx) => {
    if (isBareGrid(value)) {
      ctx.addIssue({
        code: 'custom',
        message: 'expected a list of grids (one per test input), got one bare grid: wrap it as [grid]',
        input: value,
        continue: false,
      });
    }
  })
  .pipe(
    z.array(GridSchema, { error: 'expected an array of grids' }).min(1, {
      error: 'a task needs at least 1 test output',
    }),
  );

/**
 * The test inputs of a task value that failed validation, as far as they can be read (see
 * {@link LoadResult.leftOutTests}); `undefined` when it has no non-empty `test` array.
 */
function readableTestInputs(value: unknown): (Grid | null)[] | undefined {
  if (!isRecord(value) || !Array.isArray(value.test) || value.test.length === 0) return undefined;
  return value.test.map((pair: unknown) => {
    if (!isRecord(pair)) return null;
    const grid = GridSchema.safeParse(pair.input);
    return grid.success ? grid.data : null;
  });
}

/**
 * `tasks` plus, for each task left out with readable test inputs ({@link LoadResult.leftOutTests}), a stand-in
 * with those inputs (no train pairs; an unreadable input becomes `[[0]]`): every task a submission answers, as a
 * run writes it. Check a run's submission against it: `checkSubmission(submission, withLeftOutTasks(tasks,
 * leftOutTests))`. Pure.
 */
export function withLeftOutTasks(
  tasks: TaskSet,
  leftOutTests: Readonly<Record<string, readonly (Grid | null)[]>>,
): TaskSet {
  expectRecord(tasks, 'tasks', 'withLeftOutTasks');
  expectRecord(leftOutTests, 'leftOutTests', 'withLeftOutTasks');
  const out: TaskSet = { ...tasks };
  for (const [id, inputs] of Object.entries(leftOutTests)) {
    if (Object.hasOwn(out, id)) continue;
    if (!Array.isArray(inputs)) {
      throw new ValidationError({
        taskId: id,
        source: 'withLeftOutTasks',
        issues: [
          {
            path: `leftOutTests${entryPath(id)}`,
            message: 'expected an array of test inputs (a grid or null each)',
          },
        ],
      });
    }
    setEntry<Task>(out, id, { train: [], test: inputs.map((input) => ({ input: input ?? [[0]] })) });
  }
  return out;
}

/** Throws in strict mode; collects one error per bad task in lenient mode. */
class ErrorSink {
  readonly errors: LoadError[] = [];
  readonly leftOutTests: Record<string, (Grid | null)[]> = {};
  constructor(readonly mode: 'strict' | 'lenient') {}

  /** Runs `fn`; a {@link ValidationError} or {@link FileError} it throws is thrown (strict) or kept (lenient). */
  attempt(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.fail(error);
    }
  }

  /** {@link attempt} for the task `id` whose value is `raw`: when it fails, its test inputs are kept if readable. */
  attemptTask(id: string, raw: unknown, fn: () => void): void {
    const before = this.errors.length;
    this.attempt(fn);
    if (this.errors.length > before) this.leftOut(id, raw);
  }

  /** Keeps the readable test inputs of a task left out (a valid id only: an invalid one cannot be answered). */
  leftOut(id: string, raw: unknown): void {
    if (!TaskIdSchema.safeParse(id).success) return;
    const inputs = readableTestInputs(raw);
    if (inputs !== undefined) setEntry(this.leftOutTests, id, inputs);
  }

  fail(error: unknown): void {
    if (this.mode === 'lenient' && (error instanceof ValidationError || error instanceof FileError)) {
      this.errors.push(error);
    } else throw error;
  }
}

interface Selection {
  only?: string[] | undefined;
  limit?: number | undefined;
}

/** A hint for an `only` id that is several ids joined (`--only a,b`), else `''`. @internal */
export function joinedIdsHint(id: string): string {
  return /[,;\s]/.test(id) ? ' (give several ids as separate values, not one joined by commas)' : '';
}

/** Applies `only` and `limit` to the ids found in a source (keeping source order). */
function select(ids: readonly string[], o: Selection, sink: ErrorSink, source: string): string[] {
  let out = ids.slice();
  if (o.only !== undefined) {
    const wanted = new Set(o.only);
    const present = new Set(ids);
    for (const id of o.only) {
      if (!present.has(id)) {
        sink.fail(
          new ValidationError({
            taskId: id,
            source,
            issues: [
              {
                path: 'only',
                message: `this task id is not in the source${joinedIdsHint(id)}`,
              },
            ],
          }),
        );
      }
    }
    out = out.filter((id) => wanted.has(id));
  }
  if (o.limit !== undefined) out = out.slice(0, o.limit);
  return out;
}

/** A single task file has array-valued `train`/`test`; in a challenges file those keys would hold tasks. */
function isTaskShaped(value: unknown): boolean {
  return isRecord(value) && (Array.isArray(value.train) || Array.isArray(value.test));
}

function duplicateIdError(id: string, source: string | undefined): ValidationError {
  return new ValidationError({
    taskId: id,
    source,
    issues: [
      {
        path: entryPath(id),
        message: `duplicate task id "${id}": the key occurs more than once in the file (JSON keeps only the last)`,
      },
    ],
  });
}

/** The entries of an id-keyed object (challenges, solutions, submission); throws when it is not an object. */
function idRecordEntries(value: unknown, source: string | undefined, kind: FileKind): Map<string, unknown> {
  if (!isRecord(value)) {
    throw new ValidationError({
      source,
      issues: [{ path: '', message: `a ${kind} file must be a JSON object keyed by task id` }],
    });
  }
  const entries = new Map(Object.entries(value));
  // Kaggle's three files are all keyed by task id: one given for another would fail once per task with an
  // unhelpful "expected object, received array". Name the mix-up once instead.
  const values = [...entries.values()];
  const looksLike = FILE_KINDS.find((k) => values.length > 0 && values.every(ENTRY_SHAPE[k]));
  if (looksLike !== undefined && looksLike !== kind) {
    throw new ValidationError({
      source,
      issues: [
        {
          path: '',
          message: `this looks like a ${looksLike} file (${FILE_KIND_SHAPES[looksLike]}), not a ${kind} file (${FILE_KIND_SHAPES[kind]})`,
        },
      ],
    });
  }
  return entries;
}

const FILE_KINDS = ['challenges', 'solutions', 'submission'] as const;
type FileKind = (typeof FILE_KINDS)[number];
const FILE_KIND_SHAPES: Record<FileKind, string> = {
  challenges: 'each id maps to {train, test}',
  solutions: 'each id maps to a list of output grids',
  submission: 'each id maps to a list of {attempt_1, attempt_2}',
};
const ENTRY_SHAPE: Record<FileKind, (v: unknown) => boolean> = {
  challenges: (v) => isRecord(v) && ('train' in v || 'test' in v),
  solutions: (v) =>
    Array.isArray(v) &&
    v.length > 0 &&
    v.every((g) => Array.isArray(g) && Array.isArray(g[0]) && typeof g[0][0] === 'number'),
  submission: (v) => Array.isArray(v) && v.length > 0 && v.every((e) => isRecord(e) && 'attempt_1' in e),
};

/** Validates an id-keyed object whose values all match `schema`, strictly. */
function parseIdRecord<T>(
  value: unknown,
  source: string | undefined,
  schema: z.ZodType<T>,
  kind: FileKind,
  duplicates: readonly string[],
): Record<string, T> {
  const entries = idRecordEntries(value, source, kind);
  const dup = duplicates[0];
  if (dup !== undefined) throw duplicateIdError(dup, source);
  const out: Record<string, T> = {};
  for (const [id, entry] of entries) {
    validateTaskId(id, { source, pathPrefix: entryPath(id) });
    setEntry(out, id, parseWith(schema, entry, { taskId: id, source, pathPrefix: entryPath(id) }));
  }
  return out;
}

/** An object given in memory has no text: its keys' order is the object's own. */
const NO_KEYS = { keys: [], duplicates: [] } as const;

function validateChallenges(
  value: unknown,
  source: string,
  o: Selection,
  sink: ErrorSink,
  keys: { keys: readonly string[]; duplicates: readonly string[] },
): TaskSet {
  const entries = idRecordEntries(value, source, 'challenges');
  const dups = new Set(keys.duplicates);
  // `limit` takes the first tasks of the file, as other tools read it: the parsed object lists all-digit ids
  // (13 of the evaluation set) first.
  const inFileOrder = keys.keys.length === entries.size && keys.keys.every((id) => entries.has(id));
  const tasks: TaskSet = {};
  for (const id of select(inFileOrder ? keys.keys : [...entries.keys()], o, sink, source)) {
    // A duplicate id is answered too: JSON keeps its last value, which Kaggle reads the same way.
    sink.attemptTask(id, entries.get(id), () => {
      if (dups.has(id)) throw duplicateIdError(id, source);
      validateTaskId(id, { source });
      setEntry(tasks, id, validateTask(entries.get(id), { taskId: id, source }));
    });
  }
  return tasks;
}

/**
 * Throws a {@link ValidationError} when solutions hold ids but none of the tasks': the solutions of another set
 * (training for evaluation) would otherwise merge nothing, silently, and score nothing.
 */
function checkSolutionsMatch(
  taskIds: readonly string[],
  solutionIds: readonly string[],
  source: string,
): void {
  const given = new Set(solutionIds);
  if (taskIds.length === 0 || given.size === 0 || taskIds.some((id) => given.has(id))) return;
  throw new ValidationError({
    source,
    issues: [
      {
        path: '',
        message: `has none of the ids of the tasks (the first: "${taskIds[0]}"): the solutions of another set?`,
      },
    ],
  });
}

/** A copy of `task` with `outputs` as its test outputs. */
function mergeOne(id: string, task: Task, outputs: readonly Grid[], source: string): Task {
  if (outputs.length !== task.test.length) {
    const i = Math.min(outputs.length, task.test.length);
    throw new ValidationError({
      taskId: id,
      source,
      issues: [
        {
          path: `test[${i}].output`,
          message: `the solutions have ${outputs.length} output(s) for this task, but it has ${task.test.length} test input(s)`,
        },
      ],
    });
  }
  return {
    train: task.train,
    test: task.test.map((pair, i) => ({ input: pair.input, output: outputs[i] as Grid })),
  };
}

async function loadFolder(dir: string, o: Selection, sink: ErrorSink): Promise<TaskSet> {
  const names = await listJsonFiles(dir);
  if (names.length === 0)
    throw new FileError({ path: dir, message: 'no <id>.json task files in the folder' });

  const files = filesById(dir, names, (error) => sink.fail(error));

  const selected = new Set(
    select(
      files.map((f) => f.id),
      o,
      sink,
      dir,
    ),
  );
  const chosen = files.filter((f) => selected.has(f.id));
  const results = await mapConcurrent(chosen, READ_CONCURRENCY, async (file) => {
    let raw: unknown;
    try {
      raw = await readJsonFile(file.path);
      validateTaskId(file.id, { source: file.path });
      return validateTask(raw, { taskId: file.id, source: file.path });
    } catch (error) {
      if (error instanceof ArcTtftError) return { error, raw };
      throw error;
    }
  });

  const tasks: TaskSet = {};
  results.forEach((result, i) => {
    const file = chosen[i]!;
    if ('error' in result) {
      sink.fail(result.error);
      sink.leftOut(file.id, result.raw);
    } else setEntry(tasks, file.id, result);
  });
  return tasks;
}
