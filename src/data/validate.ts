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

/** Sets `obj[id]` as an own data property, so that an id like `__proto__` cannot touch the prototype. */
export function setEntry<T>(obj: Record<string, T>, id: string, value: T): void {
  Object.defineProperty(obj, id, { value, enumerable: true, writable: true, configurable: true });
}
