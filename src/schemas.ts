/**
 * zod schemas: the single source of arc-ttft's data types. Every type here is `z.infer` of its schema.
 *
 * @module
 */
import { z } from 'zod';

/** Largest grid side ARC allows. */
export const MAX_GRID_SIZE = 30;

/** The longest time limit, in ms: Node's timers fire at once past it (about 24.8 days). */
export const MAX_TIMEOUT_MS = 2_147_483_647;

/**
 * The most samples or sequences one engine call batches (the Python engine's bound too): past it a typo
 * such as `1e12` would hang the engine instead of failing.
 */
export const MAX_BATCH_SIZE = 65_536;

/** The largest seed: seeds are 32-bit everywhere (the shuffles' generator, torch's CPU generator). */
export const MAX_SEED = 0xffff_ffff;

const SEED_RANGE = `must be a whole number from 0 to ${MAX_SEED}`;
/**
 * A seed: a whole number from 0 to {@link MAX_SEED}. Bounded because wider seeds would silently collide (2³² + 1
 * would give the same run as 1).
 */
export const SeedSchema = z
  .number({ error: SEED_RANGE })
  .int({ error: SEED_RANGE })
  .min(0, { error: SEED_RANGE })
  .max(MAX_SEED, { error: `${SEED_RANGE} (seeds are 32-bit)` });

/** A time limit in ms: a whole number up to {@link MAX_TIMEOUT_MS} (0 allowed: callers that take it as "none"). */
export const TimeoutMsSchema = z
  .number()
  .int()
  .nonnegative()
  .max(MAX_TIMEOUT_MS, {
    error: `must be at most ${MAX_TIMEOUT_MS} ms (about 24.8 days, the longest timer)`,
  });

/** One cell: a colour 0–9. */
export const CellSchema = z
  .number({ error: 'a cell must be a number' })
  .int({ error: 'a cell must be an integer 0–9' })
  .min(0, { error: 'a cell must be an integer 0–9' })
  .max(9, { error: 'a cell must be an integer 0–9' });

const RowSchema = z
  .array(CellSchema, { error: 'a row must be an array of cells' })
  .min(1, { error: 'a row must have at least 1 cell' })
  .max(MAX_GRID_SIZE, { error: `a row must have at most ${MAX_GRID_SIZE} cells` });

/** A rectangular grid of 1–30 × 1–30 cells, each an integer colour 0–9. Row-major: `grid[row][col]`. */
export const GridSchema = z
  .array(RowSchema, {
    error: (issue) =>
      issue.input === undefined ? 'is missing (a grid is required)' : 'a grid must be an array of rows',
  })
  .min(1, { error: 'a grid must have at least 1 row' })
  .max(MAX_GRID_SIZE, { error: `a grid must have at most ${MAX_GRID_SIZE} rows` })
  .superRefine((rows, ctx) => {
    const width = rows[0]?.length ?? 0;
    rows.forEach((row, i) => {
      if (row.length !== width) {
        ctx.addIssue({
          code: 'custom',
          path: [i],
          message: `ragged grid: row ${i} has ${row.length} cells, row 0 has ${width}`,
        });
      }
    });
  });
/** A rectangular grid of colours 0–9. */
export type Grid = number[][];

/** The message of a value that should be an object: zod's own says only "expected object, received …". */
const objectError = (what: string) => (issue: { input?: unknown }) =>
  issue.input === undefined ? `is missing (${what})` : `must be ${what}, not ${kindOfValue(issue.input)}`;

/** `null`, `an array`, `a string`, … for messages. */
function kindOfValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return `a ${typeof value}`;
}

/** A train pair. */
export const ExampleSchema = z.object(
  {
    /** The input grid. */
    input: GridSchema,
    /** The output grid the rule makes of it. */
    output: GridSchema,
  },
  { error: objectError('a pair {input, output}') },
);
/** A train pair: an input grid and its output grid. */
export type Example = z.infer<typeof ExampleSchema>;

/** A test pair; its output is known only when solutions are. */
export const TestExampleSchema = z.object(
  {
    /** The test input grid. */
    input: GridSchema,
    /** The expected output, when known (from a solutions file); absent in challenges. */
    output: GridSchema.optional(),
  },
  { error: objectError('a test pair {input}') },
);
/** A test pair: the input, and the output when known. */
export type TestExample = z.infer<typeof TestExampleSchema>;

/** One ARC task. */
export const TaskSchema = z.object(
  {
    /** Demonstration pairs (at least 1). */
    train: z
      .array(ExampleSchema, {
        error: (issue) =>
          issue.input === undefined ? 'is missing (a task needs train pairs)' : 'train must be an array',
      })
      .min(1, {
        error: 'a task needs at least 1 train pair',
      }),
    /** Test inputs to solve (at least 1), with outputs when known. */
    test: z
      .array(TestExampleSchema, {
        error: (issue) =>
          issue.input === undefined ? 'is missing (a task needs test inputs)' : 'test must be an array',
      })
      .min(1, {
        error: 'a task needs at least 1 test input',
      }),
  },
  { error: objectError('a task {train, test}') },
);
/** One ARC task: train pairs and test inputs (with outputs when known). */
export type Task = z.infer<typeof TaskSchema>;

/**
 * A task id. It becomes a file name (`<id>.json`), so it must be a single safe path segment:
 * letters, digits, `_`, `-` and `.`, not starting with `.`.
 */
export const TaskIdSchema = z
  .string()
  .min(1, { error: 'a task id must not be empty' })
  .max(128, { error: 'a task id must be at most 128 characters' })
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/, {
    error: 'a task id may hold only letters, digits, "_", "-" and "." and must not start with "."',
  });

/** Task id → task. */
export const TaskSetSchema = z.record(TaskIdSchema, TaskSchema);
/** A set of tasks keyed by id (insertion order is kept). */
export type TaskSet = Record<string, Task>;

/** The two attempts for one test input. */
export const AttemptsSchema = z.object(
  {
    /** First guess. */
    attempt_1: GridSchema,
    /** Second guess (may repeat the first). */
    attempt_2: GridSchema,
  },
  { error: objectError('{attempt_1, attempt_2}') },
);
/** The two attempts for one test input, Kaggle's shape. */
export type Attempts = z.infer<typeof AttemptsSchema>;

/** A Kaggle submission: task id → one `{attempt_1, attempt_2}` per test input, in test order. */
export const SubmissionSchema = z.record(TaskIdSchema, z.array(AttemptsSchema).min(1));
/** A Kaggle submission: task id → one entry per test input. */
export type Submission = Record<string, Attempts[]>;

/** A Kaggle solutions file: task id → the test outputs, in test order. */
export const SolutionsSchema = z.record(TaskIdSchema, z.array(GridSchema).min(1));
/** Task id → expected test outputs. */
export type Solutions = Record<string, Grid[]>;
