/**
 * A robust bridge to a Python module: JSON in, JSON out, one call at a time, with timeouts, crash
 * detection and clean restarts.
 *
 * pythonia spawns Python when it is loaded, cannot restart in place and does not notice a dead
 * Python, so each Python process lives inside its own *host*: a forked Node child that loads pythonia,
 * imports the module and serves calls over IPC. Losing Python (crash, timeout, abort, `restart()`)
 * means dropping the host and forking a fresh one for the next call.
 *
 * The Python module must define `dispatch(method: str, payload_json: str) -> str` returning
 * `{"ok": true, "result": …}` or `{"ok": false, "error": {"type", "message", "traceback"}}`.
 *
 * @module
 */
import { type ChildProcess, fork } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import PQueueImport from 'p-queue';
import { z } from 'zod';
import { parseOptions } from '../data/validate.js';
import { BridgeError, TimeoutError, ValidationError } from '../errors.js';
import { pythonPackageDir } from '../paths.js';
import { TimeoutMsSchema } from '../schemas.js';
import { resolvePythonBin } from '../setup/env.js';
import { findExecutable } from '../setup/python.js';
import { HOST_MODULE_ENV, type HostToParent, type ParentToHost } from './protocol.js';
import { trackLive } from './signals.js';

// p-queue is ESM only: when a CJS build require()s it (Node ≥ 20.19), the class sits one `default` deeper.
const PQueue = ((PQueueImport as unknown as { default?: typeof PQueueImport }).default ??
  PQueueImport) as typeof PQueueImport;

const MODULE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;
/** How many lines of Python's output are kept for error messages. */
const TAIL_LINES = 30;
const TAIL_CHARS = 4000;
/** How long a stopping host gets before it is killed (its own grace for Python is 2 s + 1 s + 1 s). */
const STOP_FORCE_MS = 6000;
/** How long a killed host gets to exit before SIGKILL is sent to it directly. */
const KILL_FORCE_MS = 2000;
/** How long to wait for the last output of a dead process before composing its error message. */
const TAIL_WAIT_MS = 300;
/** How long after the host exits its output pipes may stay open before they are destroyed. */
const PIPES_CLOSE_MS = 2000;

/** Options of {@link createBridge} and {@link Bridge}. */
export const BridgeOptionsSchema = z.object({
  /**
   * Python interpreter to run.
   * @default env `PYTHON_BIN`, else the arc-ttft venv's python (see `resolvePythonBin`), else `python3`
   */
  pythonBin: z.string().min(1).optional(),
  /**
   * Folders prepended to `PYTHONPATH` so the module can be imported.
   * @default [pythonPackageDir()] (the package's `python/` folder)
   */
  pythonPath: z.array(z.string().min(1)).optional(),
  /**
   * Module that defines `dispatch(method, payload_json)`.
   * @default 'arc_ttft.entry'
   */
  module: z.string().regex(MODULE_NAME, 'must be a dotted Python module name').default('arc_ttft.entry'),
  /**
   * Time limit of one call, from when it starts running (time in the queue does not count); 0 = none.
   * @default 600_000
   */
  callTimeoutMs: TimeoutMsSchema.default(600_000),
  /**
   * Time limit for Python to start and import the module (not counting `onStart`).
   * @default 60_000
   */
  startTimeoutMs: TimeoutMsSchema.min(1).default(60_000),
  /**
   * Extra environment variables for Python (over `process.env`).
   * @default {}
   */
  env: z.record(z.string(), z.string()).default({}),
});
/** Options of {@link createBridge} and {@link Bridge}. */
export type BridgeOptions = z.input<typeof BridgeOptionsSchema>;

/** Options of one {@link Bridge.call}. */
export const BridgeCallOptionsSchema = z.object({
  /**
   * Time limit of this call once it runs; 0 = none.
   * @default the bridge's `callTimeoutMs`
   */
  timeoutMs: TimeoutMsSchema.optional(),
  /** Cancels the call: a queued call is dropped, a running one stops Python (which restarts for the next call). */
  signal: z.custom<AbortSignal>((value) => value instanceof AbortSignal, 'must be an AbortSignal').optional(),
});
/** Options of one {@link Bridge.call}. */
export type BridgeCallOptions = z.input<typeof BridgeCallOptionsSchema>;

/** What `onStart` gets: a way to call the freshly started Python before any queued call runs. */
export interface BridgeSession {
  /** Process id of the new Python. */
  readonly pythonPid: number;
  /** 1 for the first start, 2 after the first restart, … */
  readonly startCount: number;
  /**
   * Calls the new Python directly (not through the queue, which waits for `onStart` to finish).
   * Same contract as {@link Bridge.call}.
   */
  call<T = unknown>(method: string, payload?: unknown, options?: BridgeCallOptions): Promise<T>;
}

/** Why a Python process went away. */
export type BridgeExitCause = 'crashed' | 'timeout' | 'aborted' | 'restart' | 'closed' | 'start_failed';

/** Reported to `onExit` each time a Python process (with its host) goes away. */
export interface BridgeExitEvent {
  /** Why it went away. */
  readonly cause: BridgeExitCause;
  /** Host process id. */
  readonly pid: number | undefined;
  /** Python's process id, when it had started. */
  readonly pythonPid: number | undefined;
  /** Python's exit code, when it exited by itself. */
  readonly code: number | null;
  /** The signal that ended Python, if any. */
  readonly signal: string | null;
  /** One line saying what happened. */
  readonly message: string;
}

/** Callbacks of a bridge (all optional). */
export interface BridgeHooks {
  /**
   * Runs after each start of Python (the first one and every restart), before queued calls run, e.g.
   * to load a model again. Call Python with `session.call`; the bridge's own `call` would wait behind
   * this start. A returned promise is awaited; if it rejects or throws, the start fails (`BridgeError`
   * `start_failed`, with the error as `cause`).
   */
  onStart?: (session: BridgeSession) => unknown;
  /** Each time a Python process goes away, whatever the cause (for logging). */
  onExit?: (event: BridgeExitEvent) => void;
  /** Each line Python (or its host) writes to stdout or stderr. Without it the output is only kept for errors. */
  onLog?: (line: string, stream: 'stdout' | 'stderr') => void;
}

interface CallRecord {
  readonly id: number;
  readonly method: string;
  readonly payloadJson: string;
  readonly timeoutMs: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  readonly done: Promise<void>;
  readonly markDone: () => void;
  /** The caller's promise. */
  readonly promise: Promise<unknown>;
  settled: boolean;
  /** Host the call was sent to (undefined while queued). */
  host: Host | undefined;
  /** Host whose loss will reject this call. */
  doomedBy: Host | undefined;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
}

interface Host {
  readonly child: ChildProcess;
  readonly pythonBin: string;
  readonly startCount: number;
  state: 'starting' | 'ready' | 'gone';
  pythonPid: number | undefined;
  readonly calls: Map<number, CallRecord>;
  /** Calls rejected when this host is lost. */
  doomed: CallRecord[] | undefined;
  killCause: BridgeExitCause | undefined;
  killMessage: string | undefined;
  startFailure: { message: string; traceback?: string | undefined } | undefined;
  hookError: unknown;
  pythonExit: { code: number | null; signal: string | null; error?: string | undefined } | undefined;
  hostExit: { code: number | null; signal: string | null } | undefined;
  readonly tail: string[];
  readonly partial: { stdout: string; stderr: string };
  /** Resolves when the host process has exited (or never started). */
  readonly exited: Promise<void>;
  /** Resolves when the host has exited and its output pipes have closed. */
  readonly closed: Promise<void>;
  readonly ready: Promise<void>;
  resolveReady: () => void;
  rejectReady: (error: unknown) => void;
  forceTimer: NodeJS.Timeout | undefined;
}

/** Deferred promise helper. */
function deferred<T = void>(): {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
} {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function tryKill(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Where the host script is: beside this module when built (`dist/bridge-host.js`), or `host.ts` under tsx. */
function hostEntry(): { path: string; execArgv: string[] } {
  const here = fileURLToPath(import.meta.url);
  const dir = dirname(here);
  if (/\.[cm]?ts$/.test(here)) {
    const tsx = createRequire(import.meta.url).resolve('tsx');
    return { path: join(dir, 'host.ts'), execArgv: ['--import', pathToFileURL(tsx).href] };
  }
  for (const name of ['bridge-host.js', 'bridge-host.mjs', 'bridge-host.cjs']) {
    const path = join(dir, name);
    if (existsSync(path)) return { path, execArgv: [] };
  }
  throw new BridgeError({
    reason: 'start_failed',
    message: `could not start Python: the bridge host script (bridge-host.js) is missing beside ${here}`,
  });
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function describeExit(code: number | null, signal: string | null): string {
  if (signal !== null) return `was killed by ${signal}`;
  return `exited with code ${code ?? 'unknown'}`;
}

let nextCallId = 1;

/**
 * A Python module behind a queue: `call(method, payload)` runs `dispatch(method, json)` in Python and
 * returns the `result` of its envelope. Calls run one at a time, in order.
 *
 * Failures: `BridgeError` with `reason` `exception` (Python raised: `pythonType`, `pythonMessage`,
 * `traceback`), `crashed` (Python died; noticed at once), `start_failed` (bad interpreter, import
 * error, start timeout, `onStart` threw) or `closed`; `TimeoutError` when a call runs past its limit;
 * the signal's reason when a call is aborted.
 *
 * Restarts: a crash, a timeout, an abort of a running call, or `restart()` stops the Python process.
 * Every call pending at that moment (the running one and those queued behind it) is rejected, since
 * they may depend on state that died with it; the next call starts a fresh Python (and runs `onStart`).
 *
 * Lifetime: `new Bridge()` starts nothing (so it can be built synchronously, and first starts and
 * restarts share one path through the queue); Python starts on the first call or `start()`.
 * {@link createBridge} does both, so a bad interpreter or module fails right there. An idle bridge does
 * not keep Node alive; `close()` stops Python and resolves once it is gone. On SIGINT/SIGTERM every
 * live bridge kills its processes before the signal's default action proceeds; if the Node process
 * dies anyway, the host and Python notice and exit.
 *
 * @example
 * ```ts
 * const bridge = await createBridge({ callTimeoutMs: 120_000 }, {
 *   onStart: (session) => session.call('load_model', { model: 'path/to/model' }),
 * });
 * try {
 *   const { pid } = await bridge.call<{ pid: number }>('ping');
 * } finally {
 *   await bridge.close();
 * }
 * ```
 */
export class Bridge {
  readonly #options: z.output<typeof BridgeOptionsSchema>;
  readonly #pythonPath: string[];
  readonly #hooks: BridgeHooks;
  readonly #queue = new PQueue({ concurrency: 1 });
  readonly #pending = new Set<CallRecord>();
  /** Hosts whose process has not exited yet (the current one and any dying ones). */
  readonly #hosts = new Set<Host>();
  #host: Host | undefined;
  #pythonBin: string | undefined;
  #startCount = 0;
  #starting = false;
  #closed = false;
  #closing: Promise<void> | undefined;

  /** Validates the options; nothing starts until `start()` or the first `call()`. */
  constructor(options: BridgeOptions = {}, hooks: BridgeHooks = {}) {
    this.#options = parseOptions(BridgeOptionsSchema, options, 'createBridge');
    this.#pythonPath = this.#options.pythonPath ?? [pythonPackageDir()];
    this.#hooks = hooks;
  }

  /** Host process id (undefined while no Python runs). */
  get pid(): number | undefined {
    return this.#host?.state === 'gone' ? undefined : this.#host?.child.pid;
  }

  /** Python process id (undefined until Python is ready). */
  get pythonPid(): number | undefined {
    return this.#host?.state === 'ready' ? this.#host.pythonPid : undefined;
  }

  /** How many times Python was started (restarts included). */
  get startCount(): number {
    return this.#startCount;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Calls waiting or running. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * Starts Python now (it starts by itself on the first call otherwise); resolves when it is ready and
   * `onStart` has run. No-op when already running.
   */
  async start(): Promise<void> {
    if (this.#closed) throw this.#closedError('start()');
    await this.#queue.add(() => this.#ensureStarted());
  }

  /**
   * Stops the running Python (rejecting pending calls) and starts a fresh one.
   */
  async restart(): Promise<void> {
    if (this.#closed) throw this.#closedError('restart()');
    const host = this.#host;
    if (host !== undefined && host.state !== 'gone') this.#kill(host, 'restart', 'restart() was called');
    await this.#queue.add(() => this.#ensureStarted());
  }

  /**
   * Runs `dispatch(method, JSON.stringify(payload))` in Python and returns the envelope's `result`
   * (typed by the caller: `call<MyResult>(…)`). Queued behind earlier calls.
   *
   * @param payload any JSON-serialisable value (default `{}`).
   * @throws {BridgeError} `exception` | `crashed` | `start_failed` | `closed`.
   * @throws {TimeoutError} past `timeoutMs` (Python is then restarted for the next call).
   * @throws {ValidationError} when the options are invalid or the payload cannot be serialised.
   */
  call<T = unknown>(method: string, payload?: unknown, options?: BridgeCallOptions): Promise<T> {
    let record: CallRecord;
    try {
      record = this.#makeRecord(method, payload, options);
    } catch (error) {
      return Promise.reject(error);
    }
    const promise = this.#track(record);
    if (!record.settled) {
      this.#queue.add(() => this.#run(record)).catch((error: unknown) => this.#settle(record, { error }));
      this.#updateRefs();
    }
    return promise as Promise<T>;
  }

  /** Resolves when no call is waiting or running. */
  async onIdle(): Promise<void> {
    await this.#queue.onIdle();
  }

  /**
   * Rejects pending calls (`BridgeError` `closed`), stops Python (end of input, then SIGTERM, then
   * SIGKILL) and resolves when its processes are gone. Idempotent; later calls are rejected. To let
   * pending calls finish first, `await bridge.onIdle()` before closing.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    for (const record of [...this.#pending]) {
      this.#settle(record, { error: this.#closedError(`call "${record.method}"`) });
    }
    // The queue is left to drain, not cleared: a queued start() or restart() must settle (it finds the bridge
    // closed), and a queued call was settled just above (its task returns at once).
    const host = this.#host;
    if (host !== undefined && host.state !== 'gone') this.#stop(host);
    this.#closing = Promise.all([...this.#hosts].map((h) => h.closed)).then(() => undefined);
    return this.#closing;
  }

  /** `await using bridge = await createBridge()` closes it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- calls ---------------------------------------------------------------------------------------

  #makeRecord(method: string, payload: unknown, options: BridgeCallOptions | undefined): CallRecord {
    if (typeof method !== 'string' || method === '') {
      throw new ValidationError({
        source: 'bridge.call',
        issues: [{ path: 'method', message: 'must be a non-empty string' }],
      });
    }
    const o = parseOptions(BridgeCallOptionsSchema, options, `bridge.call("${method}")`);
    let payloadJson: string | undefined;
    try {
      payloadJson = JSON.stringify(payload === undefined ? {} : payload);
    } catch (cause) {
      throw new ValidationError({
        source: `bridge.call("${method}")`,
        issues: [{ path: 'payload', message: `cannot be serialised to JSON: ${String(cause)}` }],
        cause,
      });
    }
    if (typeof payloadJson !== 'string') {
      throw new ValidationError({
        source: `bridge.call("${method}")`,
        issues: [{ path: 'payload', message: 'cannot be serialised to JSON' }],
      });
    }
    const { promise: done, resolve: markDone } = deferred();
    const outcome = deferred<unknown>();
    return {
      id: nextCallId++,
      method,
      payloadJson,
      timeoutMs: o.timeoutMs ?? this.#options.callTimeoutMs,
      signal: o.signal,
      resolve: outcome.resolve,
      reject: outcome.reject,
      done,
      markDone: () => markDone(),
      settled: false,
      host: undefined,
      doomedBy: undefined,
      timer: undefined,
      onAbort: undefined,
      promise: outcome.promise,
    };
  }

  /** Registers a record as pending (closed check, abort wiring) and returns its result promise. */
  #track(record: CallRecord): Promise<unknown> {
    const promise = record.promise;
    if (this.#closed) {
      record.settled = true;
      record.reject(this.#closedError(`call "${record.method}"`));
      return promise;
    }
    const signal = record.signal;
    if (signal?.aborted) {
      record.settled = true;
      record.reject(signal.reason);
      return promise;
    }
    this.#pending.add(record);
    if (signal !== undefined) {
      record.onAbort = () => {
        const running = record.host !== undefined && !record.settled;
        const host = record.host;
        this.#settle(record, { error: signal.reason });
        if (running && host !== undefined) this.#kill(host, 'aborted', `call "${record.method}" was aborted`);
      };
      signal.addEventListener('abort', record.onAbort, { once: true });
    }
    return promise;
  }

  /** Queue task: starts Python if needed, sends the call, waits until it is settled. */
  async #run(record: CallRecord): Promise<void> {
    if (record.settled || record.doomedBy !== undefined) return;
    let host: Host;
    try {
      host = await this.#ensureStarted();
    } catch (error) {
      this.#settle(record, { error });
      return;
    }
    if (record.settled || record.doomedBy !== undefined) return;
    this.#dispatch(host, record);
    await record.done;
  }

  #dispatch(host: Host, record: CallRecord): void {
    record.host = host;
    host.calls.set(record.id, record);
    if (record.timeoutMs > 0) {
      record.timer = setTimeout(() => {
        this.#settle(record, {
          error: new TimeoutError({ operation: record.method, timeoutMs: record.timeoutMs }),
        });
        this.#kill(host, 'timeout', `call "${record.method}" timed out after ${record.timeoutMs} ms`);
      }, record.timeoutMs);
    }
    this.#send(host, { type: 'call', id: record.id, method: record.method, payloadJson: record.payloadJson });
  }

  #settle(record: CallRecord, outcome: { value: unknown } | { error: unknown }): void {
    if (record.settled) return;
    record.settled = true;
    if (record.timer !== undefined) clearTimeout(record.timer);
    if (record.onAbort !== undefined) record.signal?.removeEventListener('abort', record.onAbort);
    this.#pending.delete(record);
    record.host?.calls.delete(record.id);
    if ('error' in outcome) record.reject(outcome.error);
    else record.resolve(outcome.value);
    record.markDone();
    this.#updateRefs();
  }

  #onResult(host: Host, id: number, json: string): void {
    const record = host.calls.get(id);
    if (record === undefined) return; // timed out or aborted meanwhile
    let envelope: unknown;
    try {
      envelope = JSON.parse(json);
    } catch (cause) {
      this.#settle(record, {
        error: new BridgeError({
          reason: 'exception',
          message: `call "${record.method}": dispatch returned invalid JSON (${String(cause)})`,
          cause,
        }),
      });
      return;
    }
    const e = envelope as { ok?: unknown; result?: unknown; error?: Record<string, unknown> };
    if (e !== null && typeof e === 'object' && e.ok === true) {
      this.#settle(record, { value: e.result });
      return;
    }
    const err =
      e !== null && typeof e === 'object' && e.ok === false && typeof e.error === 'object' ? e.error : {};
    const pythonType = typeof err?.type === 'string' ? err.type : 'Error';
    const pythonMessage =
      typeof err?.message === 'string' ? err.message : 'dispatch returned an invalid envelope';
    const traceback = typeof err?.traceback === 'string' ? err.traceback : undefined;
    this.#settle(record, {
      error: new BridgeError({
        reason: 'exception',
        message: `${pythonType}: ${pythonMessage} (python traceback in .traceback)`,
        pythonType,
        pythonMessage,
        traceback,
      }),
    });
  }

  // --- processes -----------------------------------------------------------------------------------

  async #ensureStarted(): Promise<Host> {
    const current = this.#host;
    if (current !== undefined && current.state === 'ready' && current.killCause === undefined) return current;
    if (this.#closed) throw this.#closedError('start');
    this.#starting = true;
    this.#updateRefs();
    try {
      // A dying Python may still hold memory (a GPU's, say): let it go before starting another.
      await Promise.all([...this.#hosts].map((h) => h.exited));
      return await this.#startHost();
    } finally {
      this.#starting = false;
      this.#updateRefs();
    }
  }

  async #startHost(): Promise<Host> {
    const o = this.#options;
    const pythonBin = this.#pythonBin ?? o.pythonBin ?? (await resolvePythonBin());
    this.#pythonBin = pythonBin;
    const startFailed = (detail: string, cause?: unknown): BridgeError =>
      new BridgeError({
        reason: 'start_failed',
        message: `could not start Python ("${pythonBin}", module ${o.module}): ${detail}`,
        cause,
      });
    const executable = await findExecutable(pythonBin);
    if (executable === undefined) throw startFailed('interpreter not found');
    const entry = hostEntry();
    if (this.#closed) throw this.#closedError('start');

    const inherited = { ...process.env, ...o.env };
    const pythonPath = [...this.#pythonPath, ...(inherited.PYTHONPATH ?? '').split(delimiter)].filter(
      (p) => p !== '',
    );
    const env: NodeJS.ProcessEnv = {
      ...inherited,
      PYTHON_BIN: executable,
      PYTHONPATH: pythonPath.join(delimiter),
      PYTHONUNBUFFERED: '1',
      REQ_TIMEOUT: '0',
      [HOST_MODULE_ENV]: o.module,
    };
    let child: ChildProcess;
    try {
      child = fork(entry.path, [], {
        execArgv: entry.execArgv,
        env,
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
        serialization: 'advanced',
        // Its own process group: a terminal's Ctrl-C reaches only us, and we stop Python in order.
        detached: process.platform !== 'win32',
      });
    } catch (cause) {
      throw startFailed(`cannot fork the bridge host: ${String(cause)}`, cause);
    }
    this.#startCount += 1;
    const exited = deferred();
    const closed = deferred();
    const ready = deferred();
    ready.promise.catch(() => {}); // observed by the awaiting code below; avoid unhandled noise
    const host: Host = {
      child,
      pythonBin,
      startCount: this.#startCount,
      state: 'starting',
      pythonPid: undefined,
      calls: new Map(),
      doomed: undefined,
      killCause: undefined,
      killMessage: undefined,
      startFailure: undefined,
      hookError: undefined,
      pythonExit: undefined,
      hostExit: undefined,
      tail: [],
      partial: { stdout: '', stderr: '' },
      exited: exited.promise,
      closed: closed.promise,
      ready: ready.promise,
      resolveReady: ready.resolve,
      rejectReady: ready.reject,
      forceTimer: undefined,
    };
    this.#host = host;
    this.#hosts.add(host);
    const untrack = trackLive(() => {
      tryKill(host.pythonPid, 'SIGKILL');
      child.kill('SIGKILL');
    });

    let exitSeen = false;
    let pipesTimer: NodeJS.Timeout | undefined;
    const onHostExit = (code: number | null, signal: string | null): void => {
      if (exitSeen) return;
      exitSeen = true;
      host.hostExit = { code, signal };
      if (host.forceTimer !== undefined) clearTimeout(host.forceTimer);
      untrack();
      this.#hosts.delete(host);
      exited.resolve();
      this.#lost(host);
      // Output pipes close when every process holding them is gone; one Python spawned may hold them.
      pipesTimer = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        closed.resolve();
      }, PIPES_CLOSE_MS);
    };
    child.on('exit', onHostExit);
    child.on('close', () => {
      if (pipesTimer !== undefined) clearTimeout(pipesTimer);
      this.#flushPartial(host);
      closed.resolve();
    });
    child.on('error', (error) => {
      if (child.pid === undefined) {
        host.pythonExit = {
          code: null,
          signal: null,
          error: `cannot fork the bridge host: ${error.message}`,
        };
        onHostExit(null, null);
        if (pipesTimer !== undefined) clearTimeout(pipesTimer);
        closed.resolve();
      }
      // Other errors (a failed send) are followed by 'exit' or handled where sent.
    });
    child.on('message', (message: HostToParent) => this.#onMessage(host, message));
    for (const stream of ['stdout', 'stderr'] as const) {
      child[stream]?.setEncoding('utf8');
      child[stream]?.on('data', (chunk: string) => this.#onOutput(host, stream, chunk));
    }

    const startTimer = setTimeout(() => {
      if (host.state === 'starting')
        this.#kill(host, 'start_failed', `did not start within ${o.startTimeoutMs} ms`);
    }, o.startTimeoutMs);
    try {
      await host.ready;
    } finally {
      clearTimeout(startTimer);
    }
    if (this.#hooks.onStart !== undefined) {
      const session: BridgeSession = {
        pythonPid: host.pythonPid ?? -1,
        startCount: host.startCount,
        call: <T>(method: string, payload?: unknown, options?: BridgeCallOptions): Promise<T> => {
          try {
            const record = this.#makeRecord(method, payload, options);
            const promise = this.#track(record);
            if (!record.settled) {
              if (host.state === 'gone' || host.killCause !== undefined)
                this.#settle(record, { error: this.#lostError(host, record, false) });
              else this.#dispatch(host, record);
            }
            return promise as Promise<T>;
          } catch (error) {
            return Promise.reject(error);
          }
        },
      };
      try {
        await this.#hooks.onStart(session);
      } catch (error) {
        host.hookError = error;
        this.#kill(host, 'start_failed', `onStart failed: ${errorMessage(error)}`);
        throw this.#startError(host);
      }
      if (host.state === 'gone' || host.killCause !== undefined) throw this.#startError(host);
    }
    host.state = 'ready';
    this.#updateRefs();
    return host;
  }

  #onMessage(host: Host, message: HostToParent): void {
    switch (message.type) {
      case 'ready':
        host.pythonPid = message.pythonPid;
        host.resolveReady();
        break;
      case 'start_failed':
        host.startFailure = { message: message.message, traceback: message.traceback };
        break;
      case 'result':
        this.#onResult(host, message.id, message.json);
        break;
      case 'call_failed': {
        const record = host.calls.get(message.id);
        if (record !== undefined) {
          this.#settle(record, {
            error: new BridgeError({
              reason: 'exception',
              message: `call "${record.method}" failed inside pythonia: ${message.message}`,
            }),
          });
        }
        break;
      }
      case 'python_exit':
        host.pythonExit = { code: message.code, signal: message.signal, error: message.error };
        this.#lost(host);
        break;
    }
  }

  #onOutput(host: Host, stream: 'stdout' | 'stderr', chunk: string): void {
    const parts = (host.partial[stream] + chunk).split(/\r?\n/);
    host.partial[stream] = parts.pop() ?? '';
    for (const line of parts) this.#line(host, stream, line);
  }

  #flushPartial(host: Host): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      if (host.partial[stream] !== '') this.#line(host, stream, host.partial[stream]);
      host.partial[stream] = '';
    }
  }

  #line(host: Host, stream: 'stdout' | 'stderr', line: string): void {
    host.tail.push(line);
    if (host.tail.length > TAIL_LINES) host.tail.shift();
    this.#notify('onLog', line, stream);
  }

  #send(host: Host, message: ParentToHost): void {
    if (!host.child.connected) {
      this.#lost(host);
      return;
    }
    host.child.send(message, (error) => {
      if (error) this.#lost(host);
    });
  }

  /** Stops a host at once: SIGKILL to Python (the host reports its exit and leaves). */
  #kill(host: Host, cause: BridgeExitCause, message: string): void {
    if (host.state === 'gone' || host.killCause !== undefined) return;
    host.killCause = cause;
    host.killMessage = message;
    this.#doom(host);
    this.#refHost(host, true);
    if (host.pythonPid !== undefined) tryKill(host.pythonPid, 'SIGKILL');
    else host.child.kill('SIGKILL');
    host.forceTimer = setTimeout(() => host.child.kill('SIGKILL'), KILL_FORCE_MS);
  }

  /** Stops a host gently (it ends Python's input, then signals it) — for close(). */
  #stop(host: Host): void {
    if (host.state === 'gone' || host.killCause !== undefined) return;
    // A host still loading may not listen for messages yet; Python dies with it (watchdog, end of input).
    if (host.state === 'starting') {
      this.#kill(host, 'closed', 'close() was called');
      return;
    }
    host.killCause = 'closed';
    host.killMessage = 'close() was called';
    this.#doom(host);
    this.#refHost(host, true);
    this.#send(host, { type: 'shutdown' });
    host.forceTimer = setTimeout(() => {
      tryKill(host.pythonPid, 'SIGKILL');
      host.child.kill('SIGKILL');
    }, STOP_FORCE_MS);
  }

  /** Marks every call pending now as lost with this host (they are rejected once it is gone). */
  #doom(host: Host): void {
    if (host.doomed !== undefined) return;
    host.doomed = [...this.#pending].filter((r) => !r.settled && r.doomedBy === undefined);
    for (const record of host.doomed) record.doomedBy = host;
  }

  /** The host (or its Python) is gone or going: reject what depended on it, report, clean up. */
  #lost(host: Host): void {
    if (host.state === 'gone') return;
    const wasStarting = host.state === 'starting';
    host.state = 'gone';
    this.#doom(host);
    if (this.#host === host) this.#host = undefined;
    if (host.hostExit === undefined && host.forceTimer === undefined) {
      host.forceTimer = setTimeout(() => host.child.kill('SIGKILL'), KILL_FORCE_MS);
    }
    // Give the last lines of output (a traceback, say) a moment to arrive before composing messages.
    const settleAll = (): void => {
      const startError = wasStarting ? this.#startError(host) : undefined;
      if (startError !== undefined) host.rejectReady(startError);
      for (const record of host.doomed ?? []) {
        this.#settle(record, { error: startError ?? this.#lostError(host, record, record.host === host) });
      }
      this.#notify('onExit', {
        cause: wasStarting && host.killCause !== 'closed' ? 'start_failed' : (host.killCause ?? 'crashed'),
        pid: host.child.pid,
        pythonPid: host.pythonPid,
        code: host.pythonExit?.code ?? null,
        signal: host.pythonExit?.signal ?? null,
        message: this.#lossSummary(host),
      });
    };
    const timer = new Promise<void>((resolve) => setTimeout(resolve, TAIL_WAIT_MS));
    void Promise.race([host.closed, timer]).then(settleAll);
  }

  /** One line: what happened to this host's Python. */
  #lossSummary(host: Host): string {
    const python = `Python${host.pythonPid !== undefined ? ` (pid ${host.pythonPid})` : ''}`;
    if (host.killCause !== undefined) return `${python} was stopped: ${host.killMessage}`;
    if (host.pythonExit?.error !== undefined) return host.pythonExit.error;
    if (host.pythonExit !== undefined)
      return `${python} ${describeExit(host.pythonExit.code, host.pythonExit.signal)}`;
    if (host.hostExit !== undefined) {
      return `the bridge host (pid ${host.child.pid}) ${describeExit(host.hostExit.code, host.hostExit.signal)}`;
    }
    return `${python} is unreachable (the bridge host's channel closed)`;
  }

  #outputTail(host: Host): string {
    const text = host.tail.join('\n').trim();
    if (text === '') return '';
    const cut = text.length > TAIL_CHARS ? `…${text.slice(-TAIL_CHARS)}` : text;
    return `\n--- Python output (last lines) ---\n${cut}`;
  }

  #lostError(host: Host, record: CallRecord, running: boolean): BridgeError {
    const what = this.#lossSummary(host);
    const message = running
      ? `${what} during call "${record.method}"${this.#outputTail(host)}`
      : `${what} before call "${record.method}" ran; it was not run (state kept in Python is lost)`;
    return new BridgeError({ reason: host.killCause === 'closed' ? 'closed' : 'crashed', message });
  }

  #startError(host: Host): BridgeError {
    const o = this.#options;
    let detail: string;
    if (host.killCause === 'closed') return this.#closedError('start');
    if (host.hookError !== undefined) detail = `onStart failed: ${errorMessage(host.hookError)}`;
    else if (host.startFailure !== undefined) detail = host.startFailure.message;
    else if (host.killCause !== undefined) detail = host.killMessage ?? 'stopped';
    else detail = `${this.#lossSummary(host)} before it was ready`;
    // An onStart hook that failed in Python (the engine's model load, say) brings its traceback along.
    const hook = host.hookError instanceof BridgeError ? host.hookError : undefined;
    return new BridgeError({
      reason: 'start_failed',
      message: `could not start Python ("${host.pythonBin}", module ${o.module}): ${detail}${this.#outputTail(host)}`,
      traceback: host.startFailure?.traceback ?? hook?.traceback,
      pythonType: hook?.pythonType,
      pythonMessage: host.startFailure?.message ?? hook?.pythonMessage,
      cause: host.hookError,
    });
  }

  /** Calls a logging hook; a hook that throws must not break the bridge. */
  #notify<K extends 'onExit' | 'onLog'>(name: K, ...args: Parameters<NonNullable<BridgeHooks[K]>>): void {
    try {
      (this.#hooks[name] as ((...a: typeof args) => void) | undefined)?.(...args);
    } catch {
      // ignored on purpose
    }
  }

  #closedError(what: string): BridgeError {
    return new BridgeError({ reason: 'closed', message: `the bridge is closed (${what})` });
  }

  /** An idle bridge must not keep Node alive; a busy or starting one must. */
  #updateRefs(): void {
    const host = this.#host;
    if (host === undefined || host.state === 'gone' || host.killCause !== undefined) return;
    this.#refHost(host, this.#starting || this.#pending.size > 0 || host.state === 'starting');
  }

  #refHost(host: Host, ref: boolean): void {
    const child = host.child;
    const handles: Array<{ ref?: () => void; unref?: () => void } | null | undefined> = [
      child,
      child.channel,
      child.stdout as Socket | null,
      child.stderr as Socket | null,
    ];
    for (const handle of handles) {
      if (ref) handle?.ref?.();
      else handle?.unref?.();
    }
  }
}

/**
 * Creates a {@link Bridge} and starts Python (resolving once it is ready and `onStart` has run), so a
 * bad interpreter or an import error surfaces here as `BridgeError` `start_failed`.
 */
export async function createBridge(options: BridgeOptions = {}, hooks: BridgeHooks = {}): Promise<Bridge> {
  const bridge = new Bridge(options, hooks);
  try {
    await bridge.start();
  } catch (error) {
    await bridge.close();
    throw error;
  }
  return bridge;
}
