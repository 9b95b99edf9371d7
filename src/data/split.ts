/**
 * Splitting a task set into per-task files, and joining per-task predictions into one Kaggle submission.
 *
 * @module
 */
import { z } from 'zod';
import { FileError, ValidationError, type ValidationIssue } from '../errors.js';
import { cloneGrid } from '../grid.js';
import { type Attempts, AttemptsSchema, type Grid, type Submission, type TaskSet } from '../schemas.js';
import {
  filesById,
  listJsonFiles,
  mapConcurrent,
  readJsonFile,
  taskFilePath,
  writeJsonAtomic,
} from './fs.js';
import { parseSubmission } from './load.js';
import {
  checkGrid,
  entryPath,
  expectRecord,
  expectTests,
  parseOptions,
  parseWith,
  setEntry,
  validateTask,
  validateTaskId,
} from './validate.js';

/** Files read or written at once. */
const IO_CONCURRENCY = 16;

/** Options of {@link splitTaskSet}. */
export const SplitOptionsSchema = z.object({
  /**
   * Write known test outputs into the task files (otherwise test pairs hold only their input).
   * @default true
   */
  includeSolutions: z.boolean().default(true),
  /**
   * Indent the files (one grid row per line).
   * @default false
   */
  pretty: z.boolean().default(false),
});
/** Options of {@link splitTaskSet}. */
export type SplitOptions = z.input<typeof SplitOptionsSchema>;

/**
 * Writes one `<outDir>/<id>.json` task file (`{train, test}`) per task, atomically, creating `outDir`.
 * Every id and task is checked before anything is written, so a bad one leaves the folder untouched.
 *
 * @returns the written paths, in task order.
 * @throws {ValidationError} for an unsafe id (`../x`, `a/b`), ids equal but for case (they would overwrite
 * each other on case-insensitive file systems), or an invalid task.
 * @throws {FileError} when a file cannot be written.
 */
export async function splitTaskSet(
  tasks: TaskSet,
  outDir: string,
  options?: SplitOptions,
): Promise<string[]> {
  const o = parseOptions(SplitOptionsSchema, options, 'splitTaskSet');
  const byFolded = new Map<string, string>();
  const jobs = Object.entries(tasks).map(([id, value]) => {
    const path = taskFilePath(outDir, id);
    const folded = id.toLowerCase();
    const other = byFolded.get(folded);
    if (other !== undefined) {
      throw new ValidationError({
        taskId: id,
        issues: [
          {
            path: '',
            message: `task ids "${other}" and "${id}" differ only by case; their files would collide on case-insensitive file systems`,
          },
        ],
      });
    }
    byFolded.set(folded, id);
    const task = validateTask(value, { taskId: id });
    const file = {
      train: task.train,
      test: task.test.map((pair) =>
        o.includeSolutions && pair.output !== undefined
          ? { input: pair.input, output: pair.output }
          : { input: pair.input },
      ),
    };
    return { path, file };
  });
  await mapConcurrent(jobs, IO_CONCURRENCY, (job) =>
    writeJsonAtomic(job.path, job.file, { pretty: o.pretty }),
  );
  return jobs.map((job) => job.path);
}

/**
 * Per-task predictions to join: task id → one entry per test input (in test order). A missing task, or a
 * `null`/`undefined` entry, is filled by the fallback.
 */
export type Predictions = Record<string, ReadonlyArray<Attempts | null | undefined> | null | undefined>;

/** Options of {@link joinPredictions}. */
export const JoinOptionsSchema = z.object({
  /**
   * What fills a test input without a prediction: `'input'` copies the test input (it scores on
   * identity-like tasks), `'zeros'` writes `[[0]]`.
   * @default 'input'
   */
  fallback: z.enum(['input', 'zeros']).default('input'),
});
/** Options of {@link joinPredictions}. */
export type JoinOptions = z.input<typeof JoinOptionsSchema>;

/** One submission entry that was filled by the fallback. */
export interface FilledEntry {
  /** The task the entry belongs to. */
  readonly taskId: string;
  /** Index of its test input. */
  readonly testIndex: number;
}

/** What {@link joinPredictions} made. */
export interface JoinResult {
  /** Every task of the set, with one `{attempt_1, attempt_2}` per test input. */
  readonly submission: Submission;
  /** The entries that had no prediction and were filled by the fallback, in submission order. */
  readonly filled: readonly FilledEntry[];
}

/**
 * Joins per-task predictions into a complete Kaggle submission: every task of `tasks`, one entry per test
 * input, both attempts; gaps are filled by the fallback and listed in `filled`. Pure (grids are copied).
 *
 * @throws {ValidationError} naming the id and path for predictions of a task not in `tasks`, more entries
 * than test inputs, or a malformed entry (e.g. `["abc"][0].attempt_2[1]`).
 */
export function joinPredictions(tasks: TaskSet, predictions: Predictions, options?: JoinOptions): JoinResult {
  const o = parseOptions(JoinOptionsSchema, options, 'joinPredictions');
  expectRecord(tasks, 'tasks', 'joinPredictions');
  expectRecord(predictions, 'predictions', 'joinPredictions');
  const unknownIds = Object.keys(predictions).filter((id) => !Object.hasOwn(tasks, id));
  if (unknownIds.length > 0) {
    throw new ValidationError({
      taskId: unknownIds[0],
      source: 'predictions',
      issues: unknownIds.map((id) => ({
        path: entryPath(id),
        message: 'predictions for a task that is not in the task set',
      })),
    });
  }

  const submission: Submission = {};
  const filled: FilledEntry[] = [];
  for (const [id, task] of Object.entries(tasks)) {
    const tests = expectTests(task, id, 'tasks');
    const entries = Object.hasOwn(predictions, id) ? predictions[id] : undefined;
    if (entries !== undefined && entries !== null && !Array.isArray(entries)) {
      throw new ValidationError({
        taskId: id,
        source: 'predictions',
        issues: [{ path: entryPath(id), message: 'expected an array with one entry per test input' }],
      });
    }
    const list = entries ?? [];
    if (list.length > tests.length) {
      throw new ValidationError({
        taskId: id,
        source: 'predictions',
        issues: [
          {
            path: `${entryPath(id)}[${tests.length}]`,
            message: `${list.length} prediction entries, but the task has ${tests.length} test input(s)`,
          },
        ],
      });
    }
    const out = tests.map((pair, i): Attempts => {
      const entry = list[i];
      if (entry === undefined || entry === null) {
        filled.push({ taskId: id, testIndex: i });
        const grid: Grid =
          o.fallback === 'input'
            ? checkGrid(pair.input, {
                taskId: id,
                source: 'tasks',
                pathPrefix: `${entryPath(id)}.test[${i}].input`,
              })
            : [[0]];
        return { attempt_1: cloneGrid(grid), attempt_2: cloneGrid(grid) };
      }
      const attempts = parseWith(AttemptsSchema, entry, {
        taskId: id,
        source: 'predictions',
        pathPrefix: `${entryPath(id)}[${i}]`,
      });
      return { attempt_1: cloneGrid(attempts.attempt_1), attempt_2: cloneGrid(attempts.attempt_2) };
    });
    setEntry(submission, id, out);
  }
  return { submission, filled };
}

/** Options of {@link writeSubmission}. */
export const WriteSubmissionOptionsSchema = z.object({
  /**
   * Indent the file (one grid row per line). Kaggle accepts either.
   * @default false
   */
  pretty: z.boolean().default(false),
});
/** Options of {@link writeSubmission}. */
export type WriteSubmissionOptions = z.input<typeof WriteSubmissionOptionsSchema>;

/**
 * Validates `submission` against the submission schema, then writes it to `path` atomically.
 *
 * @throws {ValidationError} naming the task and path of a malformed entry (nothing is written).
 * @throws {FileError} when the file cannot be written.
 */
export async function writeSubmission(
  path: string,
  submission: Submission,
  options?: WriteSubmissionOptions,
): Promise<void> {
  const o = parseOptions(WriteSubmissionOptionsSchema, options, 'writeSubmission');
  const valid = parseSubmission(submission, { source: path });
  await writeJsonAtomic(path, valid, { pretty: o.pretty });
}

/**
 * Checks that `submission` is one Kaggle's scorer accepts for `tasks`: well-formed, every task id present,
 * no extra ids, and exactly one entry per test input.
 *
 * @throws {ValidationError} listing every problem (`issues`); `taskId` and `path` name the first.
 */
export function checkSubmission(submission: Submission, tasks: TaskSet): void {
  const valid = parseSubmission(submission, { source: 'submission' });
  expectRecord(tasks, 'tasks', 'checkSubmission');
  const issues: ValidationIssue[] = [];
  let firstId: string | undefined;
  const note = (id: string, issue: ValidationIssue): void => {
    firstId ??= id;
    issues.push(issue);
  };
  for (const [id, task] of Object.entries(tasks)) {
    const tests = expectTests(task, id, 'tasks');
    const entries = Object.hasOwn(valid, id) ? valid[id] : undefined;
    if (entries === undefined) {
      note(id, { path: entryPath(id), message: 'task is missing from the submission' });
    } else if (entries.length !== tests.length) {
      note(id, {
        path: entryPath(id),
        message: `${entries.length} entries, but the task has ${tests.length} test input(s)`,
      });
    }
  }
  for (const id of Object.keys(valid)) {
    if (!Object.hasOwn(tasks, id))
      note(id, { path: entryPath(id), message: 'task id is not in the task set' });
  }
  if (issues.length > 0) throw new ValidationError({ taskId: firstId, source: 'submission', issues });
}

const PredictionFileSchema = z.array(AttemptsSchema.nullable(), {
  error: 'a prediction file must be an array with one {attempt_1, attempt_2} (or null) per test input',
});

/**
 * Reads a folder of per-task prediction files `<id>.json` (each `[{attempt_1, attempt_2}, …]`, `null` for
 * a test input without a prediction) into the shape {@link joinPredictions} takes. Other files, and hidden
 * ones, are ignored.
 *
 * @throws {FileError} when the folder or a file cannot be read or is not JSON.
 * @throws {ValidationError} naming the task, file and path (e.g. `[0].attempt_1[2]`) of a malformed entry.
 */
export async function readPredictionFolder(dir: string): Promise<Predictions> {
  const { predictions, errors } = await readPredictionFiles(dir);
  if (errors[0] !== undefined) throw errors[0];
  return predictions;
}

/**
 * {@link readPredictionFolder} that goes on past bad files: the good files' predictions, and one error per
 * bad file. Throws only when the folder itself cannot be read.
 * @internal
 */
export async function readPredictionFiles(
  dir: string,
): Promise<{ predictions: Predictions; errors: (ValidationError | FileError)[] }> {
  const errors: (ValidationError | FileError)[] = [];
  const files = filesById(dir, await listJsonFiles(dir), (error) => errors.push(error)).filter((file) => {
    try {
      validateTaskId(file.id, { source: file.path });
      return true;
    } catch (error) {
      if (!(error instanceof ValidationError)) throw error;
      errors.push(error);
      return false;
    }
  });
  const parsed = await mapConcurrent(files, IO_CONCURRENCY, async (file) => {
    try {
      return parseWith(PredictionFileSchema, await readJsonFile(file.path), {
        taskId: file.id,
        source: file.path,
      });
    } catch (error) {
      if (error instanceof ValidationError || error instanceof FileError) return error;
      throw error;
    }
  });
  const predictions: Record<string, Array<Attempts | null>> = {};
  files.forEach((file, i) => {
    const result = parsed[i]!;
    if (result instanceof ValidationError || result instanceof FileError) errors.push(result);
    else setEntry(predictions, file.id, result);
  });
  return { predictions, errors };
}
