/**
 * Validation against the zod schemas, turned into {@link ValidationError}s that name the task and the
 * JSON path of the offending field.
 *
 * @module
 */
import { z } from 'zod';
import { ValidationError, type ValidationIssue } from '../errors.js';
import {
  type Attempts,
  AttemptsSchema,
  type Grid,
  GridSchema,
  MAX_GRID_SIZE,
  type Task,
  TaskIdSchema,
  TaskSchema,
} from '../schemas.js';

/** Formats a zod path as JSON-path text: `['test', 0, 'input', 3]` → `test[0].input[3]`. */
export function formatPath(path: readonly PropertyKey[], prefix = ''): string {
  let out = prefix;
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** Where a value came from, for error messages. */
export interface ValidationContext {
  /** Task the value belongs to. */
  taskId?: string | undefined;
  /** File it was read from. */
  source?: string | undefined;
  /** Path prefix inside the file, e.g. `["abc"]` when tasks sit under their id in a challenges file. */
  pathPrefix?: string | undefined;
}

/** Parses `value` with `schema`, throwing a {@link ValidationError} that names task and field. */
export function parseWith<S extends z.ZodType>(
  schema: S,
  value: unknown,
  context: ValidationContext = {},
): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues: ValidationIssue[] = result.error.issues.flatMap((issue) => {
    if (issue.code !== 'unrecognized_keys') {
      return [{ path: formatPath(issue.path, context.pathPrefix ?? ''), message: issue.message }];
    }
    // One issue per unknown key, at the key itself, with the nearest known key: a typo like
    // `maxSeqlen` is then one glance to fix.
    const known = knownKeys(schema, issue.path);
    return issue.keys.map((key) => {
      const near = nearestKey(key, known);
      return {
        path: formatPath([...issue.path, key], context.pathPrefix ?? ''),
        message: `unknown key${near !== undefined ? `; did you mean "${near}"?` : ''}`,
      };
    });
  });
  throw new ValidationError({ taskId: context.taskId, source: context.source, issues });
}

/** The keys an object schema at `path` inside `schema` knows (empty where it cannot tell). */
function knownKeys(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  let at: unknown = schema;
  for (const part of [...path, null]) {
    while (at instanceof z.ZodPipe || at instanceof z.ZodDefault || at instanceof z.ZodOptional) {
      at = at instanceof z.ZodPipe ? at.in : at.unwrap();
    }
    if (part === null) break;
    if (!(at instanceof z.ZodObject) || typeof part !== 'string') return [];
    at = at.shape[part];
  }
  return at instanceof z.ZodObject ? Object.keys(at.shape) : [];
}

/** The known key a mistyped `key` most likely meant: same letters in another case, or ≤ 2 edits away. */
function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.min(2, Math.floor(key.length / 3));
  for (const candidate of known) {
    if (candidate.toLowerCase() === key.toLowerCase()) return candidate;
    const d = editDistance(key, candidate);
    if (d <= bestDistance && (best === undefined || d < bestDistance)) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Edit distance counting a swap of neighbours as one edit (option names are short: quadratic is fine). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
      }
    }
  }
  return d[a.length]![b.length]!;
}

/** Validates a task id (a safe single path segment). */
export function validateTaskId(id: unknown, context: ValidationContext = {}): string {
  return parseWith(TaskIdSchema, id, { ...context, taskId: typeof id === 'string' ? id : undefined });
}

/** Validates one task; errors name `taskId` and the field, e.g. `test[0].input[3]`. */
export function validateTask(value: unknown, context: ValidationContext = {}): Task {
  return parseWith(TaskSchema, value, context);
}

/** Validates one grid. */
export function validateGrid(value: unknown, context: ValidationContext = {}): Grid {
  return parseWith(GridSchema, value, context);
}

/** A valid grid (1–30 × 1–30 integers 0–9, rectangular), checked with a plain loop: cheap on hot paths. */
export function isGrid(value: unknown): value is Grid {
  if (!Array.isArray(value) || value.length < 1 || value.length > MAX_GRID_SIZE) return false;
  const first: unknown = value[0];
  if (!Array.isArray(first) || first.length < 1 || first.length > MAX_GRID_SIZE) return false;
  for (const row of value as unknown[]) {
    if (!Array.isArray(row) || row.length !== first.length) return false;
    for (const cell of row as unknown[]) {
      if (typeof cell !== 'number' || !Number.isInteger(cell) || cell < 0 || cell > 9) return false;
    }
  }
  return true;
}

/** `value` itself when it is a grid ({@link isGrid}); otherwise zod words the {@link ValidationError}. */
export function checkGrid(value: unknown, context: ValidationContext = {}): Grid {
  return isGrid(value) ? value : validateGrid(value, context);
}

function isTaskLike(task: unknown): task is Task {
  if (task === null || typeof task !== 'object') return false;
  const t = task as Partial<Task>;
  return (
    Array.isArray(t.train) &&
    t.train.length > 0 &&
    Array.isArray(t.test) &&
    t.test.length > 0 &&
    t.train.every((p) => p !== null && typeof p === 'object' && isGrid(p.input) && isGrid(p.output)) &&
    t.test.every(
      (p) =>
        p !== null &&
        typeof p === 'object' &&
        isGrid(p.input) &&
        (p.output === undefined || isGrid(p.output)),
    )
  );
}

/** `task` itself when it is well formed (a plain loop); otherwise zod names the bad field. @internal */
export function checkTask(task: unknown, context: ValidationContext = {}): Task {
  return isTaskLike(task) ? task : validateTask(task, context);
}

/** Validates one `{attempt_1, attempt_2}` entry. */
export function validateAttempts(value: unknown, context: ValidationContext = {}): Attempts {
  return parseWith(AttemptsSchema, value, context);
}

/**
 * Validates a caller's options object against its schema and fills in defaults. Errors name the
 * function and the option, e.g. `fitTask options: maxSeqLen: …`.
 */
export function parseOptions<S extends z.ZodType>(schema: S, options: unknown, where: string): z.output<S> {
  return parseWith(strictOptions(schema), options ?? {}, { source: `${where} options` });
}

const strictSchemas = new WeakMap<z.ZodType, z.ZodType>();

/**
 * The schema with unknown keys refused at its top level: an option name with a typo must not be
 * silently ignored (`{ maxSeqlen: 10 }` would run at the default). Cached: options are parsed per call.
 */
function strictOptions<S extends z.ZodType>(schema: S): S {
  if (!(schema instanceof z.ZodObject)) return schema;
  let strict = strictSchemas.get(schema);
  if (strict === undefined) {
    strict = schema.strict();
    strictSchemas.set(schema, strict);
  }
  return strict as S;
}

/** `["abc"]`: how a task's entry is addressed inside an id-keyed file (the loaders' convention). */
export function entryPath(id: string): string {
  return `[${JSON.stringify(id)}]`;
}

/** What a value is, for error messages: `null`, `an array`, or its `typeof`. @internal */
export function kindOf(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
}

/** A plain object (not null, not an array). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Throws a {@link ValidationError} naming `what` unless `value` is a plain object: id-keyed inputs from
 * JavaScript callers (`null`, an array) then fail in words, not with a `TypeError` from `Object.entries`.
 */
export function expectRecord(
  value: unknown,
  what: string,
  source: string,
): asserts value is Record<string, unknown> {
  if (!isRecord(value)) {
    throw new ValidationError({
      source,
      issues: [{ path: '', message: `${what} must be an object keyed by task id, got ${kindOf(value)}` }],
    });
  }
}

/**
 * The test inputs of a task held in a caller's task set, checked only as far as the caller reads them (a
 * `test` array of objects): cheap enough for a function called after every task of a run.
 */
export function expectTests(task: unknown, id: string, source: string): readonly { input: unknown }[] {
  const test = isRecord(task) ? task.test : undefined;
  if (!Array.isArray(test) || !test.every((pair: unknown) => isRecord(pair))) {
    throw new ValidationError({
      taskId: id,
      source,
      issues: [
        { path: `${entryPath(id)}.test`, message: 'a task must have a test array of {input} objects' },
      ],
    });
  }
  return test as { input: unknown }[];
}

/** Sets `obj[id]` as an own data property, so that an id like `__proto__` cannot touch the prototype. */
export function setEntry<T>(obj: Record<string, T>, id: string, value: T): void {
  Object.defineProperty(obj, id, { value, enumerable: true, writable: true, configurable: true });
}
