/**
 * Scale-out on Ray: a pool of engine workers (one Ray actor per GPU, or per CPU slot), each holding
 * the base model loaded once, driven from Node through one bridge process that is the Ray driver
 * (python/arc_ttft/ray_pool.py). Each worker is a {@link TaskEngine}, so {@link fineTuneTask} and
 * {@link predictTask} run unchanged against it; {@link runSingleTaskTTFT} hands tasks to free workers.
 *
 * @module
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { Bridge, type BridgeCallOptions } from '../bridge/index.js';
import { parseOptions } from '../data/validate.js';
import { ArcTtftError, BridgeError, SetupError, TimeoutError } from '../errors.js';
import type { GridFormatName } from '../format/encodings.js';
import { TimeoutMsSchema } from '../schemas.js';
import {
  type EngineOptions,
  EngineOptionsSchema,
  embeddedStandInDir,
  type LoadModelResult,
  loadModelPayload,
  type ModelInfo,
  modelInfoOf,
  type ResolvedEngineOptions,
  resolveFormat,
  resolveMaxSeqLen,
  resolveModelPath,
  type TaskEngine,
  type TrainProgress,
} from './engine.js';

/** Options of {@link createRayPool} (the `ray` option of a run). */
export const RayOptionsSchema = z.strictObject({
  /**
   * Where the workers run: `'auto'` joins the Ray cluster this machine is part of (env `RAY_ADDRESS`,
   * or one started with `ray start`) and starts a private local one when there is none; `'local'`
   * always starts a private local one; anything else is a Ray address (`head-node:6379`, `ray://…`).
   * @default 'auto'
   */
  address: z.string().min(1).default('auto'),
  /** Workers (actors); default: one per GPU of the cluster, else one per `cpusPerWorker` CPUs. */
  workers: z.number().int().positive().optional(),
  /**
   * CPUs each worker reserves (on CPU it is also torch's thread count, unless `engine.threads` says).
   * @default 1
   */
  cpusPerWorker: z.number().positive().default(1),
  /** GPUs each worker reserves; default: 1 when the cluster has GPUs, else 0. */
  gpusPerWorker: z.number().nonnegative().optional(),
  /** CPUs of a local cluster this pool starts; default: this machine's (at least `workers × cpusPerWorker`). */
  localCpus: z.number().int().positive().optional(),
  /**
   * Times a task whose worker died is handed out again (then it is recorded as `failed`).
   * @default 2
   */
  maxTaskRetries: z.number().int().nonnegative().default(2),
  /**
   * Times Ray restarts a dead worker (reloading the model); -1 = no limit.
   * @default -1
   */
  maxWorkerRestarts: z.number().int().min(-1).default(-1),
  /**
   * How long a restarting worker may take to have its model loaded again before it is retired.
   * @default 600_000
   */
  restartTimeoutMs: TimeoutMsSchema.min(1).default(600_000),
  /**
   * Time limit for connecting to (or starting) Ray and creating the workers, model loads excluded.
   * @default 300_000
   */
  startTimeoutMs: TimeoutMsSchema.min(1).default(300_000),
  /** Ship the `arc_ttft` Python package to the workers (Ray `py_modules`); default: when joining a cluster. */
  shipCode: z.boolean().optional(),
  /**
   * Longest wait of one poll for finished calls (the driver serves one request at a time).
   * @default 100
   */
  pollMs: z.number().int().positive().default(100),
});
/** Options of {@link createRayPool}. */
export type RayOptions = z.input<typeof RayOptionsSchema>;
/** Options of {@link createRayPool}, with defaults filled in. */
export type ResolvedRayOptions = z.output<typeof RayOptionsSchema>;

/** What the pool runs on (reported by the driver). */
export interface RayPoolInfo {
  /** The cluster's address (GCS). */
  readonly address: string;
  /** Whether this pool started a private local cluster (stopped on close). */
  readonly startedLocal: boolean;
  /** Workers created. */
  readonly workers: number;
  /** CPUs each worker reserves. */
  readonly cpusPerWorker: number;
  /** GPUs each worker reserves. */
  readonly gpusPerWorker: number;
  /** The cluster's total CPUs and GPUs. */
  readonly cluster: {
    /** CPUs in the cluster. */
    readonly CPU: number;
    /** GPUs in the cluster. */
    readonly GPU: number;
  };
  /** Ray's version. */
  readonly rayVersion: string;
}

/** Callbacks of a pool (all optional). */
export interface RayPoolHooks {
  /** Each line the driver process writes (Ray's own messages); worker logs stay in Ray's log folder. */
  onLog?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Each time a worker is lost (died, killed, timed out) and each time it is back with its model. */
  onWorker?: (event: WorkerEvent) => void;
}

/** A worker went away or came back. */
export interface WorkerEvent {
  /** `lost`: its call failed because it died or was killed; `ready`: its model is loaded (again); `retired`: gone for good. */
  readonly type: 'lost' | 'ready' | 'retired';
  /** The worker's index. */
  readonly worker: number;
  /** Why, for `lost` and `retired`. */
  readonly message?: string;
}

interface StartResult {
  address: string;
  started_local: boolean;
  workers: number;
  num_cpus: number;
  num_gpus: number;
  cluster: { CPU: number; GPU: number };
  ray: string;
}

type Finished =
  | { id: number; actor: number; result: { incarnation: string; envelope: string }; died?: undefined }
  | { id: number; actor: number; died: true; error_type: string; message: string };

interface PendingCall {
  readonly worker: number;
  readonly method: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
  timer: NodeJS.Timeout | undefined;
  cleanup: () => void;
}

/** Python error types that mean "the worker is gone or restarted", not "the call failed". */
const LOST_TYPES = new Set(['WorkerRestartedError']);

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function envelopeError(method: string, envelope: unknown, worker: number): BridgeError {
  const e = envelope as { error?: Record<string, unknown> } | null;
  const err = typeof e?.error === 'object' && e.error !== null ? e.error : {};
  const pythonType = typeof err.type === 'string' ? err.type : 'Error';
  const pythonMessage = typeof err.message === 'string' ? err.message : 'invalid envelope';
  const traceback = typeof err.traceback === 'string' ? err.traceback : undefined;
  if (LOST_TYPES.has(pythonType)) {
    return new BridgeError({
      reason: 'crashed',
      message: `Ray worker ${worker}: call "${method}": ${pythonMessage}`,
      pythonType,
      pythonMessage,
    });
  }
  return new BridgeError({
    reason: 'exception',
    message: `${pythonType}: ${pythonMessage} (python traceback in .traceback)`,
    pythonType,
    pythonMessage,
    traceback,
  });
}

/**
 * One worker of a {@link RayPool}: a Ray actor holding the base model, with the same call interface
 * as a local {@link Engine}. Calls run one at a time on it, in order. When the actor dies, Ray
 * restarts it (the model is loaded again) and the calls of the task it was running fail with a
 * `BridgeError` (`reason: 'crashed'`); {@link PoolEngine.recover} waits until it is back.
 */
export class PoolEngine implements TaskEngine {
  /** Index of the worker in its pool. */
  readonly worker: number;
  readonly #pool: RayPool;
  #model: ModelInfo | undefined;
  #incarnation: string | undefined;
  #lost = true;
  #retired = false;
  #restarts = -1;
  #progressListener: ((progress: TrainProgress) => void) | undefined;

  /** Made by {@link RayPool}. */
  constructor(pool: RayPool, worker: number) {
    this.#pool = pool;
    this.worker = worker;
  }

  /** The loaded model (once the worker is ready). */
  get model(): ModelInfo {
    if (this.#model === undefined)
      throw new ArcTtftError(`Ray worker ${this.worker} has no model loaded yet`);
    return this.#model;
  }

  /** The prompt format used when a task call does not name one. */
  get format(): GridFormatName {
    return resolveFormat(this.#pool.engineOptions, this.model);
  }

  /** The longest sequence used when a task call does not name one. */
  get maxSeqLen(): number {
    return resolveMaxSeqLen(this.#pool.engineOptions, this.model);
  }

  /** True after the worker died or was killed, until {@link PoolEngine.recover} has it back. */
  get lost(): boolean {
    return this.#lost;
  }

  /** True once the worker is gone for good (Ray gave up restarting it, or it did not come back in time). */
  get retired(): boolean {
    return this.#retired;
  }

  /** Times the worker came back after being lost. */
  get restarts(): number {
    return Math.max(0, this.#restarts);
  }

  /** Token counts of `texts` under the model's tokenizer. */
  async countTokens(texts: string[], options?: BridgeCallOptions): Promise<number[]> {
    if (texts.length === 0) return [];
    const r = await this.call<{ counts: number[] }>('count_tokens', { texts }, options);
    return r.counts;
  }

  /**
   * Calls an engine method on this worker (see python/arc_ttft/entry.py). A call that reaches a
   * restarted worker is refused rather than run on a fresh adapter.
   */
  async call<T = unknown>(method: string, payload?: unknown, options?: BridgeCallOptions): Promise<T> {
    if (this.#retired) {
      throw new BridgeError({ reason: 'closed', message: `Ray worker ${this.worker} is retired` });
    }
    if (this.#lost) {
      throw new BridgeError({
        reason: 'crashed',
        message: `Ray worker ${this.worker} was lost; recover() first`,
      });
    }
    const listener = this.#progressListener;
    const result = await this.#pool.submit<T>(this.worker, method, payload, options, this.#incarnation);
    // Progress is not streamed from a worker: its reports are replayed from the losses on return.
    if (method === 'train' && listener !== undefined) replayProgress(payload, result, listener);
    return result;
  }

  /** Runs `fn`; `listener` receives the training progress of the `train` call it makes (on return). */
  async withTrainProgress<T>(
    listener: ((progress: TrainProgress) => void) | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    this.#progressListener = listener;
    try {
      return await fn();
    } finally {
      this.#progressListener = undefined;
    }
  }

  /** @internal Marks the worker lost (its call failed because it died, was killed or timed out). */
  markLost(message: string): void {
    if (this.#lost || this.#retired) return;
    this.#lost = true;
    this.#pool.hooks.onWorker?.({ type: 'lost', worker: this.worker, message });
  }

  /**
   * Waits until the worker has its model loaded (first start, or after Ray restarted it), then
   * accepts calls again. Throws when the model does not load; retires the worker (and throws) when
   * Ray gave up on it or it is not back within `restartTimeoutMs`.
   */
  async recover(): Promise<void> {
    if (this.#retired)
      throw new BridgeError({ reason: 'closed', message: `Ray worker ${this.worker} is retired` });
    const deadline = performance.now() + this.#pool.options.restartTimeoutMs;
    let dead = 0;
    for (;;) {
      let loaded: { incarnation: string; envelope: string } | undefined;
      try {
        loaded = await this.#pool.submitRaw(this.worker, '_loaded');
      } catch (error) {
        // Refused while Ray restarts it (ActorUnavailableError): ask again. A few ActorDiedErrors may be
        // calls queued on the killed incarnation; many in a row mean Ray gave up on it.
        const type =
          error instanceof BridgeError && error.reason === 'crashed' ? error.pythonType : undefined;
        if (type === 'ActorDiedError') dead++;
        else if (type === 'ActorUnavailableError') dead = 0;
        if (type === undefined || dead > 20 || performance.now() > deadline) {
          this.retire(error instanceof Error ? error.message : String(error));
          throw error;
        }
        await sleep(250);
        continue;
      }
      const envelope = JSON.parse(loaded.envelope) as { ok?: boolean; result?: LoadModelResult };
      if (envelope.ok !== true || envelope.result === undefined) {
        const error = envelopeError('load_model', envelope, this.worker);
        this.retire(error.message);
        throw error;
      }
      const r = envelope.result;
      const model = this.#pool.modelPath;
      this.#model = modelInfoOf(r, model);
      this.#incarnation = loaded.incarnation;
      this.#lost = false;
      this.#restarts++;
      this.#pool.hooks.onWorker?.({ type: 'ready', worker: this.worker });
      return;
    }
  }

  /** @internal Takes the worker out of service. */
  retire(message: string): void {
    if (this.#retired) return;
    this.#retired = true;
    this.#lost = true;
    this.#pool.hooks.onWorker?.({ type: 'retired', worker: this.worker, message });
  }
}

/** Replays the progress reports Python would have written (every `progress_every` steps and the last). */
function replayProgress(payload: unknown, result: unknown, listener: (p: TrainProgress) => void): void {
  const every = (payload as { progress_every?: number } | undefined)?.progress_every ?? 0;
  const steps = (payload as { steps?: number } | undefined)?.steps ?? 0;
  const losses = (result as { losses?: (number | null)[] } | undefined)?.losses ?? [];
  if (every <= 0) return;
  for (let k = 1; k <= losses.length; k++) {
    const loss = losses[k - 1];
    if ((k % every === 0 || k === steps) && typeof loss === 'number') listener({ step: k, steps, loss });
  }
}

/**
 * Workers on Ray, each a {@link PoolEngine} with the base model loaded once. Create it with
 * {@link createRayPool}, pass it to {@link runSingleTaskTTFT} (`context.pool`) or drive its
 * {@link RayPool.engines} yourself, and close it (or `await using`).
 */
export class RayPool {
  /** The pool's options, defaults filled in. */
  readonly options: ResolvedRayOptions;
  /** The engine options every worker loads its model with. */
  readonly engineOptions: ResolvedEngineOptions;
  /** @internal */
  readonly hooks: RayPoolHooks;
  /** The model every worker loads (resolved path or Hub id). */
  readonly modelPath: string;
  readonly #bridge: Bridge;
  readonly #calls = new Map<number, PendingCall>();
  #engines: PoolEngine[] = [];
  #info: RayPoolInfo | undefined;
  #polling = false;
  #closed = false;

  /** Use {@link createRayPool}: it also starts the workers, so a bad model or a missing Ray fails there. */
  constructor(options: RayOptions = {}, engine: EngineOptions = {}, hooks: RayPoolHooks = {}) {
    this.options = parseOptions(RayOptionsSchema, options, 'createRayPool');
    this.engineOptions = parseOptions(EngineOptionsSchema, engine, 'createRayPool');
    this.hooks = hooks;
    this.modelPath = resolveModelPath(this.engineOptions.model);
    this.#bridge = new Bridge(
      {
        module: 'arc_ttft.ray_pool',
        callTimeoutMs: 0,
        startTimeoutMs: this.engineOptions.startTimeoutMs,
        ...(this.engineOptions.pythonBin !== undefined ? { pythonBin: this.engineOptions.pythonBin } : {}),
      },
      hooks.onLog ? { onLog: hooks.onLog } : {},
    );
  }

  /** The workers (after {@link RayPool.start}). */
  get engines(): readonly PoolEngine[] {
    return this.#engines;
  }

  /** Where the pool runs (after {@link RayPool.start}). */
  get info(): RayPoolInfo {
    if (this.#info === undefined)
      throw new ArcTtftError('Ray pool not started: create it with createRayPool()');
    return this.#info;
  }

  /** Connects to (or starts) Ray, creates the workers and waits until each has its model loaded. */
  async start(): Promise<this> {
    const o = this.options;
    const e = this.engineOptions;
    if (this.modelPath === embeddedStandInDir() && !existsSync(join(this.modelPath, 'config.json'))) {
      await this.#bridge.call(
        'make_tiny_model',
        { path: this.modelPath, seed: 0 },
        { timeoutMs: e.loadTimeoutMs },
      );
    }
    const env: Record<string, string> = { ...(e.env ?? {}) };
    if (e.threads !== undefined) {
      env.OMP_NUM_THREADS = String(e.threads);
      env.MKL_NUM_THREADS = String(e.threads);
    }
    let r: StartResult;
    try {
      r = await this.#bridge.call<StartResult>(
        'pool_start',
        {
          address: o.address,
          workers: o.workers ?? null,
          num_cpus: o.cpusPerWorker,
          num_gpus: o.gpusPerWorker ?? null,
          local_num_cpus: o.localCpus ?? null,
          max_restarts: o.maxWorkerRestarts,
          load: loadModelPayload(e, this.modelPath),
          env_vars: env,
          ship_code: o.shipCode ?? null,
        },
        { timeoutMs: o.startTimeoutMs },
      );
    } catch (error) {
      if (error instanceof BridgeError && error.pythonType === 'RayMissingError') {
        throw new SetupError({
          reason: 'extra_missing',
          message: `Ray is not installed in ${e.pythonBin ?? 'the arc-ttft Python environment'}: run \`arc-ttft setup --ray\` (or pip install -r python/requirements-ray.txt)`,
          cause: error,
        });
      }
      throw error;
    }
    this.#info = {
      address: r.address,
      startedLocal: r.started_local,
      workers: r.workers,
      cpusPerWorker: r.num_cpus,
      gpusPerWorker: r.num_gpus,
      cluster: r.cluster,
      rayVersion: r.ray,
    };
    this.#engines = Array.from({ length: r.workers }, (_, k) => new PoolEngine(this, k));
    const loads = await Promise.allSettled(this.#engines.map((w) => w.recover()));
    const failed = loads.find((l): l is PromiseRejectedResult => l.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    return this;
  }

  /**
   * Kills a worker's actor through Ray (as a crash would); Ray restarts it with the model loaded
   * again. Its call in flight fails as lost. For failure drills and tests.
   */
  async killWorker(worker: number): Promise<void> {
    await this.#bridge.call('pool_kill', { actor: worker, restart: true });
  }

  /** @internal Submits a call and resolves with the worker's raw answer (incarnation and envelope). */
  async submitRaw(
    worker: number,
    method: string,
    payload?: unknown,
    options: BridgeCallOptions = {},
    incarnation?: string,
  ): Promise<{ incarnation: string; envelope: string }> {
    if (this.#closed) throw new BridgeError({ reason: 'closed', message: 'the Ray pool is closed' });
    const signal = options.signal;
    if (signal?.aborted) throw signal.reason;
    const { id } = await this.#bridge.call<{ id: number }>('pool_submit', {
      actor: worker,
      method,
      payload_json: JSON.stringify(payload ?? {}),
      incarnation: incarnation ?? null,
    });
    const promise = new Promise<unknown>((resolve, reject) => {
      const record: PendingCall = { worker, method, resolve, reject, timer: undefined, cleanup: () => {} };
      const timeoutMs = options.timeoutMs ?? this.engineOptions.callTimeoutMs;
      if (timeoutMs > 0) {
        record.timer = setTimeout(() => {
          this.#drop(id);
          // As with a local engine: a call past its limit costs the worker a restart.
          this.#engines[worker]?.markLost(`call "${method}" timed out`);
          void this.killWorker(worker).catch(() => {});
          reject(new TimeoutError({ operation: `call "${method}" on Ray worker ${worker}`, timeoutMs }));
        }, timeoutMs);
      }
      this.#calls.set(id, record);
      if (signal !== undefined) {
        const onAbort = () => {
          this.#drop(id);
          this.#engines[worker]?.markLost(`call "${method}" was aborted`);
          void this.killWorker(worker).catch(() => {});
          reject(signal.reason);
        };
        record.cleanup = () => signal.removeEventListener('abort', onAbort);
        // Aborted while the submit was on its way: cancel it now.
        if (signal.aborted) onAbort();
        else signal.addEventListener('abort', onAbort, { once: true });
      }
    });
    // A result cannot arrive before this point: the wait that returns it is queued behind the submit.
    void this.#poll();
    return promise as Promise<{ incarnation: string; envelope: string }>;
  }

  /** @internal Submits an engine call and resolves with its result (or rejects like a local engine). */
  async submit<T>(
    worker: number,
    method: string,
    payload: unknown,
    options: BridgeCallOptions | undefined,
    incarnation: string | undefined,
  ): Promise<T> {
    const raw = await this.submitRaw(worker, method, payload, options, incarnation);
    let envelope: { ok?: boolean; result?: unknown };
    try {
      envelope = JSON.parse(raw.envelope);
    } catch (cause) {
      throw new BridgeError({
        reason: 'exception',
        message: `call "${method}": invalid JSON from the worker`,
        cause,
      });
    }
    if (envelope.ok === true) return envelope.result as T;
    const error = envelopeError(method, envelope, worker);
    if (error.reason === 'crashed') this.#engines[worker]?.markLost(error.message);
    throw error;
  }

  #drop(id: number): void {
    const record = this.#calls.get(id);
    if (record === undefined) return;
    this.#calls.delete(id);
    if (record.timer !== undefined) clearTimeout(record.timer);
    record.cleanup();
  }

  #settle(item: Finished): void {
    const record = this.#calls.get(item.id);
    if (record === undefined) return; // timed out or aborted meanwhile
    this.#drop(item.id);
    if (item.died) {
      const message = `Ray worker ${item.actor} was lost during "${record.method}": ${item.error_type}: ${item.message}`;
      // A refused call to a restarting worker is not a loss of its (already lost) state.
      if (record.method !== '_loaded') this.#engines[item.actor]?.markLost(message);
      record.reject(
        new BridgeError({
          reason: 'crashed',
          message,
          pythonType: item.error_type,
          pythonMessage: item.message,
        }),
      );
    } else {
      record.resolve(item.result);
    }
  }

  /** Collects finished calls while any are pending (one poll loop at a time). */
  async #poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      while (this.#calls.size > 0 && !this.#closed) {
        const r = await this.#bridge.call<{ finished: Finished[] }>('pool_wait', {
          timeout_s: this.options.pollMs / 1000,
        });
        for (const item of r.finished) this.#settle(item);
      }
    } catch (error) {
      // The driver itself failed: every pending call fails with it.
      for (const [id, record] of [...this.#calls]) {
        this.#drop(id);
        record.reject(error);
      }
    } finally {
      this.#polling = false;
    }
  }

  /** Stops the workers and disconnects from Ray (a local cluster this pool started stops too); idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, record] of [...this.#calls]) {
      this.#drop(id);
      record.reject(new BridgeError({ reason: 'closed', message: 'the Ray pool was closed' }));
    }
    try {
      if (this.#info !== undefined) await this.#bridge.call('pool_shutdown', {}, { timeoutMs: 60_000 });
    } catch {
      // The driver is going away anyway.
    } finally {
      await this.#bridge.close();
    }
  }

  /** Same as {@link RayPool.close}, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Connects to a Ray cluster (or starts a local one), creates the workers and loads the base model in
 * each. Needs the optional Ray packages (`arc-ttft setup --ray`); without them it throws a
 * {@link SetupError} saying so.
 *
 * @example
 * ```ts
 * await using pool = await createRayPool({ workers: 4 }, { model: './my-model' });
 * const result = await runSingleTaskTTFT('tasks.json', { out: 'run' }, { pool });
 * ```
 */
export async function createRayPool(
  options: RayOptions = {},
  engine: EngineOptions = {},
  hooks: RayPoolHooks = {},
): Promise<RayPool> {
  const pool = new RayPool(options, engine, hooks);
  try {
    return await pool.start();
  } catch (error) {
    await pool.close();
    throw error;
  }
}
