/**
 * The one error hierarchy of arc-ttft. Every error the library throws (or returns as data) is an
 * {@link ArcTtftError}; catch the subclass you care about, or check `error.code`.
 *
 * @module
 */

/** Stable machine-readable codes, one per error class. */
export type ArcTtftErrorCode =
  | 'arc_ttft_error'
  | 'validation_error'
  | 'task_too_long'
  | 'bridge_error'
  | 'timeout'
  | 'file_error'
  | 'setup_error';

/** Base class of every error arc-ttft throws. */
export class ArcTtftError extends Error {
  /** Stable code for programmatic checks (survives bundling, unlike class names). */
  readonly code: ArcTtftErrorCode = 'arc_ttft_error';

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** One problem found while validating a value against a schema. */
export interface ValidationIssue {
  /** JSON path of the offending field inside the task (or file), e.g. `test[0].input[3]`. */
  readonly path: string;
  /** What is wrong with it. */
  readonly message: string;
}

/**
 * Input did not match its schema: a task, a submission, a solutions file or an option.
 * `taskId` and `path` name exactly which value is wrong.
 */
export class ValidationError extends ArcTtftError {
  override readonly code = 'validation_error' as const;
  /** Task the error belongs to, when it belongs to one. */
  readonly taskId: string | undefined;
  /** JSON path of the first offending field (`''` for the value itself). */
  readonly path: string;
  /** File the value was read from, when it came from a file. */
  readonly source: string | undefined;
  /** Every problem found (the first one is also in `path` and the message). */
  readonly issues: readonly ValidationIssue[];

  constructor(params: {
    message?: string;
    taskId?: string | undefined;
    source?: string | undefined;
    issues: readonly ValidationIssue[];
    cause?: unknown;
  }) {
    const first = params.issues[0] ?? { path: '', message: params.message ?? 'invalid value' };
    const where = [
      params.source !== undefined ? `${params.source}` : undefined,
      params.taskId !== undefined ? `task "${params.taskId}"` : undefined,
      first.path !== '' ? first.path : undefined,
    ]
      .filter((x) => x !== undefined)
      .join(': ');
    const more = params.issues.length > 1 ? ` (+${params.issues.length - 1} more)` : '';
    super(params.message ?? `${where ? `${where}: ` : ''}${first.message}${more}`, { cause: params.cause });
    this.taskId = params.taskId;
    this.path = first.path;
    this.source = params.source;
    this.issues = params.issues.length > 0 ? params.issues : [first];
  }
}

/** A task's prompt does not fit `maxSeqLen` even with a single train pair. */
export class TaskTooLongError extends ArcTtftError {
  override readonly code = 'task_too_long' as const;
  /** The task that does not fit. */
  readonly taskId: string;
  /** Tokens needed by the smallest prompt (one train pair) plus the longest possible answer. */
  readonly minTokens: number;
  /** The token limit it was fitted to. */
  readonly maxSeqLen: number;

  constructor(params: { taskId: string; minTokens: number; maxSeqLen: number }) {
    super(
      `task "${params.taskId}": needs ${params.minTokens} tokens with a single train pair, more than maxSeqLen ${params.maxSeqLen}`,
    );
    this.taskId = params.taskId;
    this.minTokens = params.minTokens;
    this.maxSeqLen = params.maxSeqLen;
  }
}

/** Why a bridge call failed. */
export type BridgeFailure = 'exception' | 'crashed' | 'closed' | 'start_failed';

/**
 * The Python side failed: it raised (then `pythonType`, `pythonMessage` and `traceback` say what),
 * died, could not start, or the engine was closed.
 */
export class BridgeError extends ArcTtftError {
  override readonly code = 'bridge_error' as const;
  /** What went wrong: Python raised, crashed, was closed, or could not start. */
  readonly reason: BridgeFailure;
  /** Python exception class, e.g. `ValueError` (reason `exception`). */
  readonly pythonType: string | undefined;
  /** Python exception message (reason `exception`). */
  readonly pythonMessage: string | undefined;
  /** Python traceback text (reason `exception`). */
  readonly traceback: string | undefined;

  constructor(params: {
    reason: BridgeFailure;
    message: string;
    pythonType?: string | undefined;
    pythonMessage?: string | undefined;
    traceback?: string | undefined;
    cause?: unknown;
  }) {
    super(params.message, { cause: params.cause });
    this.reason = params.reason;
    this.pythonType = params.pythonType;
    this.pythonMessage = params.pythonMessage;
    this.traceback = params.traceback;
  }
}

/** An operation ran past its time limit. */
export class TimeoutError extends ArcTtftError {
  override readonly code = 'timeout' as const;
  /** What timed out, e.g. `train` or `task 00576224`. */
  readonly operation: string;
  /** The limit that was exceeded, in milliseconds. */
  readonly timeoutMs: number;

  constructor(params: { operation: string; timeoutMs: number; message?: string }) {
    super(params.message ?? `${params.operation} timed out after ${params.timeoutMs} ms`);
    this.operation = params.operation;
    this.timeoutMs = params.timeoutMs;
  }
}

/** A file or folder could not be read or written (missing, unreadable, not valid JSON, unsafe path). */
export class FileError extends ArcTtftError {
  override readonly code = 'file_error' as const;
  /** The file or folder concerned. */
  readonly path: string;

  constructor(params: { path: string; message: string; cause?: unknown }) {
    super(`${params.path}: ${params.message}`, { cause: params.cause });
    this.path = params.path;
  }
}

/** True when `value` is any arc-ttft error. */
export function isArcTtftError(value: unknown): value is ArcTtftError {
  return value instanceof ArcTtftError;
}

/** Why setting up the Python environment failed. */
export type SetupFailure =
  | 'python_missing'
  | 'python_too_old'
  | 'venv_unavailable'
  | 'venv_failed'
  | 'pip_failed'
  | 'unsafe_dir'
  /** An optional part (e.g. Ray) was asked for but its Python packages are not installed. */
  | 'extra_missing';

/**
 * The Python environment could not be set up: the base interpreter is missing or too old, lacks
 * `venv`/`pip`, or `pip install` failed (`output` holds the tail of its output).
 */
export class SetupError extends ArcTtftError {
  override readonly code = 'setup_error' as const;
  /** Which step failed. */
  readonly reason: SetupFailure;
  /** Tail of the failing command's output, when a command failed. */
  readonly output: string | undefined;

  constructor(params: {
    reason: SetupFailure;
    message: string;
    output?: string | undefined;
    cause?: unknown;
  }) {
    super(params.message, { cause: params.cause });
    this.reason = params.reason;
    this.output = params.output;
  }
}
