/**
 * Validation against the zod schemas, turned into {@link ValidationError}s that name the task and the
 * JSON path of the offending field.
 *
 * @module
 */
import type { z } from 'zod';
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
  const issues: ValidationIssue[] = result.error.issues.map((issue) => ({
    path: formatPath(issue.path, context.pathPrefix ?? ''),
    message: issue.message,
  }));
  throw new ValidationError({ taskId: context.taskId, source: context.source, issues });
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
  return parseWith(schema, options ?? {}, { source: `${where} options` });
}

/** Sets `obj[id]` as an own data property, so that an id like `__proto__` cannot touch the prototype. */
export function setEntry<T>(obj: Record<string, T>, id: string, value: T): void {
  Object.defineProperty(obj, id, { value, enumerable: true, writable: true, configurable: true });
}
