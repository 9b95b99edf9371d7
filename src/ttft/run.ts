/**
 * `runSingleTaskTTFT`: the main job. Every task gets its own adapter (or, for comparison, one adapter
 * for the whole set, or none), predictions are voted to two attempts and joined into one Kaggle
 * submission. A journal makes runs resumable; the submission on disk is complete at every moment.
 *
 * @module
 */
import {
  closeSync,
  existsSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { makeDirs, writeJsonAtomic } from '../data/fs.js';
import {
  joinedIdsHint,
  type LoadError,
  loadSolutions,
  loadTaskSetLeniently,
  loadTasks,
  mergeSolutions,
  withLeftOutTasks,
} from '../data/load.js';
import { joinPredictions, type Predictions, writeSubmission } from '../data/split.js';
import { isRecord, parseOptions, setEntry } from '../data/validate.js';
import {
  ArcTtftError,
  BridgeError,
  FileError,
  TaskTooLongError,
  TimeoutError,
  ValidationError,
} from '../errors.js';
import { GridFormatNameSchema } from '../format/encodings.js';
import { PromptStyleSchema } from '../format/prompt.js';
import { writeReport } from '../report/html.js';
import { hashString } from '../rng.js';
import {
  type Attempts,
  AttemptsSchema,
  type Grid,
  SeedSchema,
  type Solutions,
  type Submission,
  type Task,
  type TaskSet,
  TimeoutMsSchema,
} from '../schemas.js';
import { type ScoreReport, scorePredictions } from '../score.js';
import { VERSION } from '../version.js';
import { keepAdapter, MAX_ADAPTER_SLOTS, predictTasks } from './batch.js';
import {
  createEngine,
  type Engine,
  EngineOptionsSchema,
  type ModelInfo,
  type ResolvedEngineOptions,
  type TaskEngine,
  type TrainProgress,
} from './engine.js';
import {
  checkTrainOptions,
  FineTuneOptionsSchema,
  fineTuneTask,
  fitTaskForEngine,
  trainingTexts,
  trainSamples,
} from './fine-tune.js';
import { OutputLock } from './lock.js';
import { createRayPool, RayOptionsSchema, type RayPool } from './pool.js';
import { PredictOptionsSchema, type PredictResult } from './predict.js';
import {
  type ErrorRecord,
  type RunMode,
  recordsToPredictions,
  TASK_STATUSES,
  type TaskRecord,
  type TaskStatus,
  type TestRecord,
} from './records.js';

/** Training settings of a run (see {@link FineTuneOptions}). */
export const RunTrainOptionsSchema = FineTuneOptionsSchema.pick({
  steps: true,
  batchSize: true,
  gradAccum: true,
  pack: true,
  compile: true,
  lr: true,
  warmupRatio: true,
  weightDecay: true,
  augmentationsPerPair: true,
  maxSamples: true,
  transforms: true,
  colourPermutation: true,
  shuffleTrain: true,
  progressEvery: true,
});

/** Prediction settings of a run (see {@link PredictOptions}). */
export const RunPredictOptionsSchema = PredictOptionsSchema.pick({
  augmentations: true,
  transforms: true,
  colourPermutation: true,
  shuffleTrain: true,
  doSample: true,
  temperature: true,
  topP: true,
  batchSize: true,
  decode: true,
  minVotes: true,
});

/** Options of {@link runSingleTaskTTFT}. */
export const RunOptionsSchema = z.strictObject({
  /**
   * `single-task`: a fresh adapter per task (the method); `whole-set`: one adapter trained on all tasks
   * first; `none`: the base model, no fine-tuning. Same code path otherwise, for fair comparisons.
   * @default 'single-task'
   */
  mode: z.enum(['single-task', 'whole-set', 'none']).default('single-task'),
  /** Output folder for submission.json, results.jsonl (the journal), metrics.json and report.html; default: nothing written. */
  out: z.string().min(1).optional(),
  /**
   * Kaggle solutions file whose grids become the tasks' test outputs, for metrics. Read before any work; a
   * broken entry, a count of outputs that differs from a task's test inputs, or a file with none of the
   * tasks' ids is a {@link ValidationError}.
   */
  solutions: z.string().min(1).optional(),
  /** Only these task ids. */
  only: z.array(z.string().min(1)).min(1).optional(),
  /** At most this many tasks (after `only`). */
  limit: z.number().int().positive().optional(),
  /**
   * The engine to create (ignored when an engine is passed in the context).
   * @default {}
   */
  engine: EngineOptionsSchema.default(EngineOptionsSchema.parse({})),
  /** Grid format; default: the engine's. */
  format: GridFormatNameSchema.optional(),
  /**
   * Prompt style.
   * @default 'plain'
   */
  style: PromptStyleSchema.default('plain'),
  /** Longest sequence; default: the engine's. */
  maxSeqLen: z.number().int().positive().optional(),
  /**
   * Seed of everything random (combined with each task id).
   * @default 0
   */
  seed: SeedSchema.default(0),
  /**
   * Training settings; each field left out takes its {@link FineTuneOptions} default.
   * @default {}
   */
  train: RunTrainOptionsSchema.default(RunTrainOptionsSchema.parse({})),
  /**
   * Prediction settings; each field left out takes its {@link PredictOptions} default.
   * @default {}
   */
  predict: RunPredictOptionsSchema.default(RunPredictOptionsSchema.parse({})),
  /**
   * Total training steps of the whole-set adapter; default: `train.steps` × number of tasks, the same
   * total as single-task.
   */
  wholeSetSteps: z.number().int().positive().optional(),
  /**
   * Time limit of one task (fine-tuning plus prediction), ms; past it the task is recorded as
   * `timed_out`, Python restarts and the run goes on.
   * @default 1_800_000
   */
  taskTimeoutMs: TimeoutMsSchema.min(1).default(1_800_000),
  /**
   * Time budget of the whole run, ms (Kaggle allows 12 h): the remaining time is shared over the
   * remaining tasks, lowering steps and views to finish in time. Default: none.
   */
  timeBudgetMs: z.number().int().positive().optional(),
  /**
   * Grid used where a task produced nothing: `input` (a copy of the test input) or `zeros` (`[[0]]`).
   * @default 'input'
   */
  fallback: z.enum(['input', 'zeros']).default('input'),
  /**
   * Continue from the journal in `out` (finished tasks are skipped); `false` starts over.
   * @default true
   */
  resume: z.boolean().default(true),
  /**
   * On a resume, run again the tasks the journal records as `failed` or `timed_out` (a crash, a hang, a
   * spent time budget); `false` keeps those records and their fallback answers.
   * @default true
   */
  retryFailed: z.boolean().default(true),
  /**
   * Save each task's adapter under `out/adapters/<id>` (PEFT format).
   * @default false
   */
  saveAdapters: z.boolean().default(false),
  /**
   * Tasks predicted together in one generation batch (`single-task` mode: each is trained and its
   * adapter kept in a slot, then the group's views are decoded together, each row with its task's
   * adapter). More rows per batch fill a GPU better; results are the same up to float rounding. A
   * crash or time-out loses the group in flight (its trained tasks go back in the queue once), and
   * the group's generation has the longest time left of its tasks.
   * @default 1
   */
  tasksPerBatch: z.number().int().min(1).max(MAX_ADAPTER_SLOTS).default(1),
  /**
   * Run the tasks on Ray workers instead of one local engine (see {@link createRayPool}; ignored when a
   * pool is passed in the context): longest tasks first, each to the next free worker, a task whose
   * worker dies handed out again. Same journal, resume, events, budget and submission. Modes
   * `single-task` and `none` only. Default: one local engine.
   */
  ray: RayOptionsSchema.optional(),
});
/** Options of {@link runSingleTaskTTFT}. */
export type RunOptions = z.input<typeof RunOptionsSchema>;
type Resolved = z.output<typeof RunOptionsSchema>;

/** What happens during a run, in order. */
export type RunEvent =
  | {
      /** The engine is ready and the journal read; tasks are about to run. */
      readonly type: 'run_started';
      /** The run's mode. */
      readonly mode: RunMode;
      /** The loaded base model. */
      readonly model: ModelInfo;
      /** Tasks in the run (valid ones). */
      readonly total: number;
      /** The longest sequence the run fits tasks into (its `maxSeqLen`, or the engine's). */
      readonly maxSeqLen: number;
      /** Tasks already finished in the journal (skipped). */
      readonly resumed: number;
      /** Tasks the journal records as `failed` or `timed_out`, run again (`retryFailed`). */
      readonly retried: number;
      /**
       * Tasks the journal has records of that are not in this run's selection (another `only` / `limit` /
       * task file): the submission, the metrics and the report cover this selection only.
       */
      readonly outside: number;
      /** Tasks that could not be loaded (not run). */
      readonly invalid: number;
    }
  | {
      /** Mode `whole-set`: the shared adapter starts training. */
      readonly type: 'whole_set_started';
      /** Training samples pooled over all tasks. */
      readonly samples: number;
      /** Optimizer steps it will train for. */
      readonly steps: number;
    }
  | {
      /** A task starts. */
      readonly type: 'task_started';
      /** The task's id. */
      readonly taskId: string;
      /** 0-based position among the tasks still to run. */
      readonly index: number;
      /** Tasks still to run, this one included. */
      readonly remaining: number;
      /** The Ray worker running it (runs on a pool only). */
      readonly worker?: number;
      /** Steps and views planned for this task (the time budget may lower them). */
      readonly settings: {
        /** Training steps planned (0 in modes `none` and `whole-set`). */
        readonly steps: number;
        /** Augmented views per test input. */
        readonly augmentations: number;
      };
    }
  | {
      /** Training progress (every `train.progressEvery` steps). */
      readonly type: 'train_step';
      /** The task, or `*` for the whole-set adapter. */
      readonly taskId: string;
      /** Steps done. */
      readonly step: number;
      /** Steps in this training call. */
      readonly steps: number;
      /** Loss of the last step (finite: a step whose loss is not finite ends training with `TrainingDivergedError`). */
      readonly loss: number;
    }
  | {
      /** A task finished, in any status (with `out`, already in the journal and the submission). */
      readonly type: 'task_finished';
      /** What the task recorded. */
      readonly record: TaskRecord;
      /** Tasks finished so far, resumed ones included. */
      readonly done: number;
      /** Tasks in the run (valid ones). */
      readonly total: number;
    }
  | {
      /**
       * A task goes back in the queue: on a pool its worker died mid-task; with `tasksPerBatch` > 1 Python
       * restarted after the task was trained and its kept adapter was lost.
       */
      readonly type: 'task_retried';
      /** The task's id. */
      readonly taskId: string;
      /** The worker that was lost; absent on a local engine (a restart lost the adapter kept for a task of a `tasksPerBatch` group). */
      readonly worker?: number;
      /** Times this task has been handed out again so far (1 for the first retry). */
      readonly retry: number;
      /** Why the worker was lost. */
      readonly error: ErrorRecord;
    }
  | {
      /** The run ended (also when aborted). */
      readonly type: 'run_finished';
      /** Its outcome, as returned by {@link runSingleTaskTTFT}. */
      readonly result: RunResult;
    };

/** What the caller can hand a run besides options. */
export interface RunContext {
  /** An engine to use (not closed by the run); default: one created from `options.engine` and closed at the end. */
  readonly engine?: Engine;
  /** A Ray pool to run on (not closed by the run; see {@link createRayPool}); takes precedence over `engine`. */
  readonly pool?: RayPool;
  /** Receives every {@link RunEvent}. */
  readonly onEvent?: (event: RunEvent) => void;
  /**
   * Stops the run: the engine call in flight is cancelled, that task is not recorded (a resume redoes
   * it), and the run returns with `aborted: true` after writing the submission and the report.
   */
  readonly signal?: AbortSignal;
  /** Each line Python writes (for a verbose mode); default: kept only for error messages. */
  readonly onLog?: (line: string, stream: 'stdout' | 'stderr') => void;
}

/** Paths of what a run wrote. */
export interface RunFiles {
  /** The output folder (`out`, absolute). */
  readonly dir: string;
  /** The Kaggle submission, complete at every moment. */
  readonly submission: string;
  /** The journal (`results.jsonl`), one line per finished task; what a resume reads. */
  readonly journal: string;
  /** The scores (`metrics.json`), written only when the run completes and every task's test outputs are known. */
  readonly metrics: string;
  /** The HTML report (written at the end of the run, also when it stopped early). */
  readonly report: string;
}

/** The outcome of {@link runSingleTaskTTFT}. */
export interface RunResult {
  /** The run's mode. */
  readonly mode: RunMode;
  /** The base model used. */
  readonly model: ModelInfo;
  /**
   * The complete submission: every valid task and every invalid one whose test inputs can be read (fallbacks),
   * every test input, two attempts each.
   */
  readonly submission: Submission;
  /** One record per valid task, in task order (resumed ones included). */
  readonly records: readonly TaskRecord[];
  /** Tasks that could not be loaded, with why. */
  readonly invalid: readonly LoadError[];
  /** Counts of each status. */
  readonly statusCounts: Readonly<Record<TaskStatus, number>>;
  /** Scores, when every task's test outputs are known. */
  readonly score: ScoreReport | undefined;
  /**
   * Valid tasks some of whose test outputs are not known (neither in the task nor in `solutions`): the run is
   * scored only when there is none. Every task when no outputs were given.
   */
  readonly unknownOutputs: readonly string[];
  /** Wall-clock seconds of this invocation. */
  readonly seconds: number;
  /** Whether the run stopped early on the abort signal. */
  readonly aborted: boolean;
  /** Files written, when `out` was given. */
  readonly files: RunFiles | undefined;
}

const JOURNAL = 'results.jsonl';

/**
 * The options that change results, as JSON: a journal written under other ones cannot be resumed. Kept in the
 * journal's run line, so that a refused resume can say which option changed.
 */
function runSettings(o: Resolved, e: ResolvedEngineOptions, model: string): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify({
      mode: o.mode,
      model,
      lora: e.lora,
      adapterInit: e.adapterInit ?? null,
      engineSeed: e.seed,
      format: o.format ?? e.format,
      style: o.style,
      maxSeqLen: o.maxSeqLen ?? e.maxSeqLen,
      seed: o.seed,
      // Compiled training and the decoding loop change only float rounding: a resume may switch them (as it may
      // tasksPerBatch).
      train: { ...o.train, compile: undefined },
      predict: { ...o.predict, decode: undefined },
      wholeSetSteps: o.wholeSetSteps ?? null,
      fallback: o.fallback,
    }),
  ) as Record<string, unknown>;
}

function fingerprint(settings: Record<string, unknown>): string {
  return hashString(JSON.stringify(settings)).toString(16);
}

/** `train.steps: 200 → 20` for each setting that differs (JSON values; a journal's settings are JSON already). */
function settingsChanges(before: unknown, after: unknown, path = ''): string[] {
  if (isRecord(before) && isRecord(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) => settingsChanges(before[k], after[k], path === '' ? k : `${path}.${k}`));
  }
  const text = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));
  return text(before) === text(after) ? [] : [`${path}: ${text(before)} → ${text(after)}`];
}

function errorRecord(error: unknown): ErrorRecord {
  if (error instanceof BridgeError) {
    return {
      type: error.pythonType ?? `BridgeError(${error.reason})`,
      message: error.pythonMessage ?? error.message,
      traceback: error.traceback,
    };
  }
  if (error instanceof Error) return { type: error.name, message: error.message };
  return { type: 'Error', message: String(error) };
}

/** Appends JSON lines and fsyncs each, so a kill -9 loses at most the line being written. */
class Journal {
  readonly path: string;
  #fd: number;

  constructor(path: string, truncate: boolean) {
    this.path = path;
    try {
      this.#fd = openSync(path, truncate ? 'w' : 'a');
      if (!truncate) cutTornLine(path, this.#fd);
    } catch (error) {
      throw new FileError({ path, message: 'the journal cannot be written', cause: error });
    }
  }

  append(value: unknown): void {
    try {
      writeSync(this.#fd, `${JSON.stringify(value)}\n`);
      fsyncSync(this.#fd);
    } catch (error) {
      // A full disk or a failing device: the run cannot keep its results, so it stops with the reason.
      throw new FileError({ path: this.path, message: 'the journal cannot be written', cause: error });
    }
  }

  close(): void {
    closeSync(this.#fd);
  }
}

interface JournalState {
  readonly fingerprint: string | undefined;
  /** The run line's settings (older journals have none: their refusals cannot name the option). */
  readonly settings?: unknown;
  readonly records: Map<string, TaskRecord>;
  /** The last whole-set adapter journalled, with the hash of the task ids it was trained on. */
  readonly wholeSet: { adapterPath: string; ids: string | undefined } | undefined;
}

/**
 * Drops a torn last line (a run killed mid-write), which {@link readJournal} ignored: appended to, it would
 * swallow the next record.
 */
function cutTornLine(path: string, fd: number): void {
  const bytes = readFileSync(path);
  if (bytes.length === 0 || bytes.at(-1) === 0x0a) return;
  ftruncateSync(fd, bytes.lastIndexOf(0x0a) + 1);
}

/**
 * What a resume needs of a journal's task line (the rest is kept as written): checked so that a damaged or
 * hand-edited journal is a clear error, not a crash half-way through the run.
 */
const JournalTaskSchema = z.looseObject({
  taskId: z.string().min(1),
  status: z.enum(TASK_STATUSES),
  attempts: z.array(AttemptsSchema),
  fallback: z.array(z.number().int().nonnegative()),
  keptTrain: z.array(z.number().int().nonnegative()),
  droppedTrain: z.array(z.number().int().nonnegative()),
  settings: z.looseObject({ steps: z.number(), augmentations: z.number() }),
  seconds: z.number(),
  finishedAt: z.string(),
});

const NOT_A_JOURNAL = 'this file is not an arc-ttft journal (its first record is not a run line)';

/** The advice of every journal refusal: the run never overwrites a journal it cannot read. */
const JOURNAL_ADVICE = 'use another output folder, or start over (resume: false, --no-resume on the CLI)';

/**
 * Reads a journal; a torn last line (killed mid-write) is ignored. A file that is not an arc-ttft journal, or
 * a line that is not a record a resume can use, is refused: it is never truncated or half read.
 */
function readJournal(path: string): JournalState {
  const records = new Map<string, TaskRecord>();
  let fp: string | undefined;
  let settings: unknown;
  let wholeSet: JournalState['wholeSet'];
  let text: string;
  try {
    if (!existsSync(path)) return { fingerprint: undefined, records, wholeSet };
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new FileError({ path, message: 'the journal cannot be read', cause: error });
  }
  const lines = text.split('\n');
  // The last line is torn unless the file ends with a newline (then it is '').
  const complete = lines.slice(0, -1);
  const refuse = (line: number, message: string) =>
    new ValidationError({
      source: path,
      issues: [{ path: `line ${line}`, message: `${message}; ${JOURNAL_ADVICE}` }],
    });
  // A file that is only a torn line: ours only if it is the start of a run line (killed while writing the
  // first line). Anything else (a one-line file without a newline) is some other file, never truncated.
  const tail = lines.at(-1)!;
  if (
    complete.every((l) => l.trim() === '') &&
    tail.trim() !== '' &&
    !'{"type":"run"'.startsWith(tail.slice(0, 13))
  ) {
    throw refuse(complete.length + 1, NOT_A_JOURNAL);
  }
  for (const [i, line] of complete.entries()) {
    if (line.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      throw refuse(
        i + 1,
        fp === undefined ? NOT_A_JOURNAL : 'not JSON (was the folder written by two runs at once?)',
      );
    }
    const kind = isRecord(value) ? value.type : undefined;
    if (fp === undefined && kind !== 'run') throw refuse(i + 1, NOT_A_JOURNAL);
    if (!isRecord(value)) throw refuse(i + 1, 'not a journal record');
    if (kind === 'run') {
      if (typeof value.fingerprint !== 'string') throw refuse(i + 1, 'a run line without its fingerprint');
      fp = value.fingerprint;
      settings = value.settings;
    } else if (kind === 'task') {
      const checked = JournalTaskSchema.safeParse(value);
      if (!checked.success) {
        const issue = checked.error.issues[0]!;
        throw refuse(
          i + 1,
          `a task line the run cannot resume from (${issue.path.join('.') || 'line'}: ${issue.message})`,
        );
      }
      records.set(checked.data.taskId, value as unknown as TaskRecord);
    } else if (kind === 'whole_set' && typeof value.adapterPath === 'string') {
      wholeSet = {
        adapterPath: value.adapterPath,
        ids: typeof value.ids === 'string' ? value.ids : undefined,
      };
    }
  }
  return { fingerprint: fp, settings, records, wholeSet };
}

async function checkWritable(dir: string): Promise<void> {
  try {
    await makeDirs(dir);
    const probe = join(dir, `.write-test-${process.pid}`);
    closeSync(openSync(probe, 'w'));
    rmSync(probe);
  } catch (error) {
    throw new FileError({ path: dir, message: 'output folder cannot be written', cause: error });
  }
}

/**
 * Shares the remaining time over the remaining tasks, from what finished tasks cost. Training stops at
 * its allowance by itself (Python's `max_seconds`); prediction is sized from the measured time per
 * view. Until something is measured, each timed-out task halves the settings of the next.
 * @internal exported for its tests
 */
export class Scheduler {
  readonly #budgetMs: number | undefined;
  readonly #started = performance.now();
  #trainSecondsPerStep: number | undefined;
  #predictSecondsPerView: number | undefined;
  #overheadSeconds = 0;
  #measured = 0;
  #trainMeasured = 0;
  /** Shrinks the un-calibrated settings after each timeout. */
  #scale = 1;

  /** The clock starts here, so model loading and whole-set training count against the budget. */
  constructor(budgetMs: number | undefined) {
    this.#budgetMs = budgetMs;
  }

  get remainingMs(): number {
    return this.#budgetMs === undefined
      ? Number.POSITIVE_INFINITY
      : this.#budgetMs - (performance.now() - this.#started);
  }

  /** Settings for the next task, given how many (this one included) remain and its test inputs. */
  plan(
    remainingTasks: number,
    tests: number,
    base: { steps: number; augmentations: number },
  ): { steps: number; augmentations: number; timeMs: number; trainSeconds: number | undefined } {
    if (this.#budgetMs === undefined) {
      return { ...base, timeMs: Number.POSITIVE_INFINITY, trainSeconds: undefined };
    }
    const remaining = Math.max(0, this.remainingMs);
    const shareMs = remaining / Math.max(1, remainingTasks);
    // A task may overrun its share a little before it is killed: a kill costs a Python restart.
    const timeMs = Math.min(remaining, 2 * shareMs);
    if (this.#trainSecondsPerStep === undefined || this.#predictSecondsPerView === undefined) {
      // Nothing measured yet: train for part of the share (Python stops there); this task calibrates.
      return {
        steps: Math.max(1, Math.round(base.steps * this.#scale)),
        augmentations: Math.max(1, Math.round(base.augmentations * this.#scale)),
        timeMs,
        trainSeconds: (0.5 * this.#scale * shareMs) / 1000,
      };
    }
    // Aim at 90 % of the share: estimates are averages, and a late task must not eat the next one's time.
    const share = (0.9 * shareMs) / 1000 - this.#overheadSeconds;
    const perView = this.#predictSecondsPerView * Math.max(1, tests);
    let augmentations = base.augmentations;
    while (augmentations > 1 && augmentations * perView > share / 3) augmentations--;
    const trainTime = share - augmentations * perView;
    const steps =
      this.#trainSecondsPerStep > 0
        ? Math.max(0, Math.min(base.steps, Math.floor(trainTime / this.#trainSecondsPerStep)))
        : base.steps;
    return { steps, augmentations, timeMs, trainSeconds: Math.max(trainTime, 0.001) };
  }

  /** Learns from a finished task (running means). */
  observe(record: TaskRecord): void {
    if (record.status !== 'done' || record.predict === undefined) return;
    const n = ++this.#measured;
    const mean = (old: number | undefined, x: number, count = n) =>
      old === undefined ? x : old + (x - old) / count;
    // Compiling is paid once per process: it is not what a step costs (a task that only compiled says nothing).
    const trainSeconds = record.train ? record.train.seconds - (record.train.compileSeconds ?? 0) : 0;
    if (record.train && record.train.steps > 0 && trainSeconds > 0) {
      const perStep = trainSeconds / record.train.steps;
      this.#trainSecondsPerStep = mean(this.#trainSecondsPerStep, perStep, ++this.#trainMeasured);
    } else if (!record.train?.compileSeconds) {
      this.#trainSecondsPerStep ??= 0;
    }
    const views = record.predict.tests.reduce((a, t) => a + t.views, 0);
    this.#predictSecondsPerView = mean(
      this.#predictSecondsPerView,
      record.predict.seconds / Math.max(1, views),
    );
    const accounted = (record.train?.seconds ?? 0) + record.predict.seconds;
    this.#overheadSeconds = mean(this.#overheadSeconds, Math.max(0, record.seconds - accounted));
  }

  /**
   * A task, or a group of tasks predicted in one batch, ran out of time: before any measurement, the next
   * plans shrink by half. Once per group: its tasks timed out together, on one limit.
   */
  timedOut(): void {
    if (this.#measured === 0) this.#scale /= 2;
  }
}

/** Cells in a task's grids: a cheap stand-in for its prompt length, to hand out long tasks first. */
function taskSize(task: TaskSet[string]): number {
  let cells = 0;
  const add = (g: Grid) => {
    for (const row of g) cells += row.length + 1;
  };
  for (const pair of task.train) {
    add(pair.input);
    add(pair.output);
  }
  for (const t of task.test) add(t.input);
  return cells;
}

function fallbackGrid(kind: 'input' | 'zeros', input: Grid): Grid {
  return kind === 'zeros' ? [[0]] : input.map((row) => row.slice());
}

function solutionsOf(tasks: TaskSet): Solutions | undefined {
  if (Object.keys(tasks).length === 0) return undefined;
  const solutions: Solutions = {};
  for (const [id, task] of Object.entries(tasks)) {
    const outputs: Grid[] = [];
    for (const t of task.test) {
      if (t.output === undefined) return undefined;
      outputs.push(t.output);
    }
    setEntry(solutions, id, outputs);
  }
  return solutions;
}

/**
 * Runs test-time fine-tuning over a task set and returns a complete submission.
 *
 * For each task: fit it into `maxSeqLen` (dropping train pairs), build leave-one-out augmented samples,
 * reset the adapter and fine-tune it (mode `single-task`), predict every test input under
 * `predict.augmentations` views, vote to two attempts. A task that does not fit even with one pair, or
 * fails, or times out, gets a fallback answer and a status saying so; Python restarts and the run goes
 * on. With `out`, each finished task is appended to `results.jsonl` and `submission.json` is rewritten
 * (complete, with fallbacks for tasks still to run); running the same command again resumes.
 *
 * @param tasks A task set, or a path: a Kaggle challenges file, a folder of `<id>.json`, or one task file.
 * @throws {@link FileError} before any work when `out` cannot be written, the model or the solutions file does not
 * exist; {@link ValidationError} before any work for bad options, no valid task, an `only` id not in the tasks, or
 * a solutions file that is broken, has another count of outputs than a task's test inputs or none of the tasks'
 * ids; and after the model loaded, for a journal written with other options.
 */
export async function runSingleTaskTTFT(
  tasks: string | TaskSet,
  options?: RunOptions,
  context: RunContext = {},
): Promise<RunResult> {
  const started = performance.now();
  const o = parseOptions(RunOptionsSchema, options, 'runSingleTaskTTFT');
  checkTrainOptions(o.train, 'runSingleTaskTTFT options', 'train.');
  const scheduler = new Scheduler(o.timeBudgetMs);
  const emit = (event: RunEvent) => context.onEvent?.(event);
  // Aborting stops the engine call in flight too (Python restarts if anything runs after).
  const signal = context.signal !== undefined ? { signal: context.signal } : {};

  // Load: invalid tasks are reported, valid ones run. A task set object is checked as a file's tasks are (one
  // bad test input, unchecked, broke the first submission write of the whole run).
  const source = typeof tasks === 'string' ? tasks : '(object)';
  if (typeof tasks === 'string' && o.out !== undefined && resolve(tasks) === resolve(o.out)) {
    throw new ValidationError({
      source: 'runSingleTaskTTFT options',
      issues: [
        {
          path: 'out',
          message: `${o.out} is the tasks folder: a later run would read its submission.json and metrics.json as tasks; choose another folder`,
        },
      ],
    });
  }
  const selection = {
    ...(o.only !== undefined ? { only: o.only } : {}),
    ...(o.limit !== undefined ? { limit: o.limit } : {}),
  };
  const loaded =
    typeof tasks === 'string'
      ? await loadTasks(tasks, { mode: 'lenient', ...selection })
      : loadTaskSetLeniently(tasks, { ...selection, source });
  let taskSet: TaskSet = loaded.tasks;
  const invalid: readonly LoadError[] = loaded.errors;
  // The readable test inputs of the invalid tasks: they get fallback answers, so a Kaggle submission has every id.
  const leftOutTests = loaded.leftOutTests;
  // Bad selection or input as a whole fails before any work: an `only` id not in the source, no valid task.
  const unknown = invalid.filter((e) => e instanceof ValidationError && e.path === 'only');
  if (unknown.length > 0) {
    throw new ValidationError({
      source: 'runSingleTaskTTFT options',
      issues: unknown.map((e) => ({
        path: 'only',
        message: `task id ${JSON.stringify((e as ValidationError).taskId)} is not in ${source}${joinedIdsHint((e as ValidationError).taskId ?? '')}`,
      })),
    });
  }
  if (Object.keys(taskSet).length === 0) {
    throw new ValidationError({
      source,
      issues: [
        {
          path: '',
          message:
            invalid.length === 0
              ? 'no task to run'
              : `no valid task (${invalid.length} invalid; the first: ${invalid[0]!.message})`,
        },
      ],
    });
  }
  // Solutions are read whole and strictly, before any work: they are for metrics, and a task must not be
  // left out (untrained) because its solution is broken. A file with none of the tasks' ids is the wrong one
  // (mergeSolutions refuses it).
  // Kept whole: an invalid task's solution still scores its fallback answer, as Kaggle would.
  let solutionsFile: Solutions | undefined;
  if (o.solutions !== undefined) {
    solutionsFile = await loadSolutions(o.solutions);
    taskSet = mergeSolutions(taskSet, solutionsFile, { source: o.solutions });
  }
  const ids = Object.keys(taskSet);

  // Fail before any work: output folder, then the engine (model path, Python).
  let files: RunFiles | undefined;
  if (o.out !== undefined) {
    const dir = resolve(o.out);
    await checkWritable(dir);
    files = {
      dir,
      submission: join(dir, 'submission.json'),
      journal: join(dir, JOURNAL),
      metrics: join(dir, 'metrics.json'),
      report: join(dir, 'report.html'),
    };
  }
  const usePool = context.pool !== undefined || (context.engine === undefined && o.ray !== undefined);
  if (usePool && o.mode === 'whole-set') {
    throw new ValidationError({
      source: 'runSingleTaskTTFT options',
      issues: [
        {
          path: 'mode',
          message: "mode 'whole-set' trains one shared adapter on one engine: run it without Ray",
        },
      ],
    });
  }
  const hooks = context.onLog ? { onLog: context.onLog } : {};
  const ownPool = usePool && context.pool === undefined;
  const ownEngine = !usePool && context.engine === undefined;
  // Before the model loads: a second run into the same folder fails at once, not minutes later.
  const lock = files !== undefined ? OutputLock.take(files.dir) : undefined;
  let pool: RayPool | undefined;
  let localEngine: Engine | undefined;
  try {
    pool = context.pool ?? (ownPool ? await createRayPool(o.ray, o.engine, hooks) : undefined);
    localEngine = usePool ? undefined : (context.engine ?? (await createEngine(o.engine, hooks)));
  } catch (error) {
    lock?.release();
    throw error;
  }
  // A pool's workers share options and model: the first live one speaks for them all.
  const engine: TaskEngine = localEngine ?? pool?.engines.find((w) => !w.retired) ?? pool!.engines[0]!;
  // The options of the engine that runs (a given engine or pool has its own; `o.engine` is then unused).
  const engineOptions = localEngine?.options ?? pool?.engineOptions ?? o.engine;
  const runStartedAt = new Date().toISOString();
  const temp: string[] = [];
  let journal: Journal | undefined;
  try {
    const format = o.format ?? engine.format;
    const maxSeqLen = o.maxSeqLen ?? engine.maxSeqLen;
    const settings = runSettings(o, engineOptions, engine.model.model);
    const fp = fingerprint(settings);

    // Resume.
    let state: JournalState = { fingerprint: undefined, records: new Map(), wholeSet: undefined };
    if (files !== undefined && o.resume) {
      state = readJournal(files.journal);
      if (state.fingerprint !== undefined && state.fingerprint !== fp) {
        const changes = state.settings === undefined ? [] : settingsChanges(state.settings, settings);
        throw new ValidationError({
          source: files.journal,
          issues: [
            {
              path: 'options',
              message: `this journal was written by a run with different options${changes.length > 0 ? ` (${changes.join(', ')})` : ''}; use another output folder, or start over (resume: false, --no-resume on the CLI)`,
            },
          ],
        });
      }
    }
    if (files !== undefined) {
      const fresh = !o.resume || state.fingerprint === undefined;
      journal = new Journal(files.journal, fresh);
      if (fresh)
        journal.append({ type: 'run', version: VERSION, fingerprint: fp, settings, mode: o.mode, ids });
    }
    const done = new Map<string, TaskRecord>();
    let retried = 0;
    for (const id of ids) {
      const r = state.records.get(id);
      // A record of another version of the task (other test inputs) does not answer this one: run it again. Nor
      // does one of a task that was invalid then (it has been fixed), or one that failed or timed out (a crash, a
      // hang, a spent time budget), unless retryFailed is off.
      if (r === undefined || r.attempts.length !== taskSet[id]!.test.length || r.status === 'invalid')
        continue;
      if (o.retryFailed && (r.status === 'failed' || r.status === 'timed_out')) retried++;
      else done.set(id, r);
    }
    // Journalled tasks that are neither run nor invalid this time (this run's invalid ones are in its selection).
    const selected = new Set([
      ...ids,
      ...invalid.flatMap((e) => (e instanceof ValidationError && e.taskId ? [e.taskId] : [])),
    ]);
    const outside = [...state.records.values()].filter(
      (r) => r.status !== 'invalid' && !selected.has(r.taskId),
    );

    const predictions: Predictions = {};
    // What the submission answers: the valid tasks, then the invalid ones with readable test inputs (fallbacks
    // only; an unreadable input is answered [[0]]).
    const answered = withLeftOutTasks(taskSet, leftOutTests);
    const writeSubmissionNow = async () => {
      for (const [id, r] of done) setEntry<Predictions[string]>(predictions, id, r.attempts);
      const { submission } = joinPredictions(answered, predictions, { fallback: o.fallback });
      if (files !== undefined) await writeSubmission(files.submission, submission);
      return submission;
    };
    // Complete from the start: every task has a (fallback) answer before the first one runs.
    const firstSubmission = await writeSubmissionNow();
    // The invalid tasks' records (their fallback answers and why), journalled so that the report shows them.
    // One per answered task that is not in the task set: an error about a task that loaded anyway (a duplicate
    // file of a valid id) makes no record.
    const invalidRecords = Object.keys(firstSubmission).flatMap((id): TaskRecord[] => {
      if (Object.hasOwn(taskSet, id)) return [];
      const e = invalid.find((x) => x instanceof ValidationError && x.taskId === id);
      const attempts = firstSubmission[id]!;
      return [
        {
          type: 'task',
          taskId: id,
          status: 'invalid',
          attempts,
          fallback: attempts.map((_, i) => i),
          keptTrain: [],
          droppedTrain: [],
          settings: { steps: 0, augmentations: 0 },
          error: e !== undefined ? errorRecord(e) : undefined,
          seconds: 0,
          finishedAt: runStartedAt,
        },
      ];
    });
    for (const r of invalidRecords) {
      // A resume finds the same invalid task again: its line is already there, and a second one would only grow
      // the journal at every start.
      const before = state.records.get(r.taskId);
      const same =
        before?.status === 'invalid' &&
        JSON.stringify(before.attempts) === JSON.stringify(r.attempts) &&
        before.error?.message === r.error?.message;
      if (!same) journal?.append(r);
    }

    const todo = ids.filter((id) => !done.has(id));
    emit({
      type: 'run_started',
      model: engine.model,
      mode: o.mode,
      total: ids.length,
      maxSeqLen,
      resumed: ids.length - todo.length,
      retried,
      outside: outside.length,
      invalid: invalid.length,
    });

    const text = { format, style: o.style, maxSeqLen, dropStrategy: 'random' as const, seed: o.seed };

    // Whole-set mode: one adapter on every task's samples, saved so a restart or a resume can reload it.
    let wholeSetAdapter: string | undefined;
    if (o.mode === 'whole-set' && todo.length > 0) {
      // The adapter depends on the task selection: a resume on another one trains it again (finished tasks keep
      // their answers).
      const wholeSetIds = hashString(JSON.stringify([...ids].sort())).toString(16);
      const saved = state.wholeSet;
      if (saved !== undefined && saved.ids === wholeSetIds && existsSync(saved.adapterPath)) {
        wholeSetAdapter = saved.adapterPath;
      } else {
        const samples: { prompt: string; answer: string }[] = [];
        for (const id of ids) {
          const task = taskSet[id]!;
          try {
            const fit = await fitTaskForEngine(engine, task, { ...text, taskId: id });
            samples.push(
              ...trainingTexts(task, fit.kept, format, {
                ...o.train,
                seed: o.seed,
                style: o.style,
                taskId: id,
              }),
            );
          } catch (error) {
            if (!(error instanceof TaskTooLongError)) throw error;
          }
        }
        const steps = o.wholeSetSteps ?? o.train.steps * ids.length;
        await engine.call('reset_adapter', { seed: null });
        let trained: Awaited<ReturnType<typeof trainSamples>> | undefined;
        // No samples: every task is too long; the task loop records each as such.
        if (samples.length > 0) {
          emit({ type: 'whole_set_started', samples: samples.length, steps });
          try {
            trained = await trainSamples(
              engine,
              samples,
              { ...o.train, steps, seed: o.seed, timeoutMs: 0, ...signal },
              maxSeqLen,
              (p) => emit({ type: 'train_step', taskId: '*', ...p }),
            );
          } catch (error) {
            // Aborted mid-training: no adapter to save; the task loop below sees the signal and stops, and
            // the run ends like any aborted run (journal, submission, report).
            if (!context.signal?.aborted) throw error;
          }
        }
        if (trained !== undefined) {
          const dir =
            files !== undefined
              ? join(files.dir, 'whole-set-adapter')
              : await mkdtemp(join(tmpdir(), 'arc-ttft-'));
          if (files === undefined) temp.push(dir);
          wholeSetAdapter = (await engine.call<{ path: string }>('save_adapter', { path: dir })).path;
          journal?.append({
            type: 'whole_set',
            ids: wholeSetIds,
            adapterPath: wholeSetAdapter,
            steps: trained.steps,
            samples: trained.samples,
            seconds: trained.seconds,
            losses: trained.losses,
          });
        }
      }
      if (wholeSetAdapter !== undefined) await engine.call('load_adapter', { path: wholeSetAdapter });
    }

    let aborted = false;
    let needAdapterReload = false;
    // On a pool every worker is a lane; locally the one engine is. Longest tasks first on a pool, so
    // the last to start are short ones and the workers finish together; and with groups, so a group's
    // tasks are of similar size (its rows are padded to its longest prompt).
    const lanes: TaskEngine[] = pool !== undefined ? [...pool.engines] : [engine];
    const queue =
      pool !== undefined || o.tasksPerBatch > 1
        ? [...todo].sort((a, b) => taskSize(taskSet[b]!) - taskSize(taskSet[a]!))
        : [...todo];
    const retries = new Map<string, number>();
    let handedOut = 0;
    // Tasks taken by the lanes and not yet recorded or handed back; a lane with an empty queue waits while any
    // are (a retried task goes back in the queue), and wakes when the queue or this count changes.
    let inFlight = 0;
    const waiting: (() => void)[] = [];
    const queueChanged = () => new Promise<void>((wake) => waiting.push(wake));
    const notifyQueue = () => {
      for (const wake of waiting.splice(0)) wake();
    };
    // One submission write at a time: an older snapshot must not land over a newer one.
    let writing: Promise<unknown> = Promise.resolve();
    const writeInTurn = () => {
      const next = writing.then(writeSubmissionNow);
      writing = next.catch(() => {});
      return next;
    };
    /** Records a task: journal (unless `journalled` is false: a resume then runs it again), submission, event. */
    const finish = async (record: TaskRecord, journalled = true) => {
      if (journalled) journal?.append(record);
      done.set(record.taskId, record);
      scheduler.observe(record);
      await writeInTurn();
      emit({ type: 'task_finished', record, done: done.size, total: ids.length });
    };
    const fallbackAttempts = (id: string, byTest: (Attempts | null)[], fallback: number[]): Attempts[] =>
      taskSet[id]!.test.map((t, i) => {
        const a = byTest[i];
        if (a) return a;
        fallback.push(i);
        const g = fallbackGrid(o.fallback, t.input);
        return { attempt_1: g, attempt_2: fallbackGrid(o.fallback, t.input) };
      });

    /** One task of a lane's group, from its start to its record. */
    interface Slot {
      readonly id: string;
      readonly task: Task;
      readonly started: number;
      readonly plan: ReturnType<Scheduler['plan']>;
      readonly deadline: number;
      status: TaskStatus;
      error: ErrorRecord | undefined;
      train: TaskRecord['train'];
      predict: TaskRecord['predict'];
      keptTrain: number[];
      droppedTrain: number[];
      byTest: (Attempts | null)[];
      /** Kept-adapter slot holding its trained adapter (groups of several tasks in `single-task` mode). */
      adapter: number | undefined;
      /**
       * Milliseconds spent on this task alone: its preparation plus its share of the group's prediction (in a
       * group, tasks wait for each other: the wall time since `started` would count the others' training too).
       */
      ownMs: number;
    }
    const timeLeftOf = (deadline: number) => Math.max(1, Math.round(deadline - performance.now()));
    const record = async (t: Slot) => {
      const fallback: number[] = [];
      const attempts = fallbackAttempts(t.id, t.byTest, fallback);
      await finish({
        type: 'task',
        taskId: t.id,
        status: t.status,
        attempts,
        fallback,
        keptTrain: t.keptTrain,
        droppedTrain: t.droppedTrain,
        train: t.train,
        predict: t.predict,
        settings: { steps: t.train?.steps ?? 0, augmentations: t.plan.augmentations },
        error: t.error,
        seconds: t.ownMs / 1000,
        finishedAt: new Date().toISOString(),
      });
    };
    // What an error means for the task it hit: `abort` (the run stops), `retry` (back in the queue), or recorded.
    const classify = (
      t: Slot,
      caught: unknown,
      worker: number | undefined,
    ): 'abort' | 'retry' | 'recorded' => {
      if (context.signal?.aborted) return 'abort';
      const poolEngine = worker !== undefined ? pool?.engines[worker] : undefined;
      // A pool worker died mid-task (not a timeout: that task is recorded as timed out): hand it out again.
      if (
        worker !== undefined &&
        poolEngine?.lost === true &&
        caught instanceof BridgeError &&
        caught.reason === 'crashed'
      ) {
        if (requeue(t.id, worker, caught)) return 'retry';
      }
      if (caught instanceof TaskTooLongError) t.status = 'too_long';
      else if (caught instanceof TimeoutError) t.status = 'timed_out';
      else if (caught instanceof ArcTtftError) t.status = 'failed';
      else throw caught;
      t.error = errorRecord(caught);
      // Python restarted (crash or timeout): the whole-set adapter must be loaded again.
      if (caught instanceof BridgeError || caught instanceof TimeoutError) needAdapterReload = true;
      return 'recorded';
    };
    // Puts a task back at the front of the queue, at most `maxTaskRetries` times (1 without a pool).
    const requeue = (id: string, worker: number | undefined, cause: unknown): boolean => {
      const retry = (retries.get(id) ?? 0) + 1;
      if (retry > (pool?.options.maxTaskRetries ?? 1)) return false;
      retries.set(id, retry);
      queue.unshift(id);
      notifyQueue();
      emit({
        type: 'task_retried',
        taskId: id,
        ...(worker !== undefined ? { worker } : {}),
        retry,
        error: errorRecord(cause),
      });
      return true;
    };
    // Python restarted (a crash, or a call that timed out); a spent time budget (timeoutMs 0) restarts nothing.
    const restarts = (caught: unknown) =>
      caught instanceof BridgeError || (caught instanceof TimeoutError && caught.timeoutMs > 0);

    /** Starts a task: its plan, deadline and `task_started` event (`unstarted`: its group's tasks not started yet, itself included). */
    const begin = (id: string, worker: number | undefined, unstarted: number): Slot => {
      const index = handedOut++;
      const remaining = queue.length + unstarted;
      const task = taskSet[id]!;
      // Workers run side by side: the remaining time is shared over the remaining rounds of the live ones.
      const live = pool !== undefined ? pool.engines.filter((w) => !w.retired).length : 1;
      const plan = scheduler.plan(Math.ceil(remaining / Math.max(1, live)), task.test.length, {
        steps: o.mode === 'single-task' ? o.train.steps : 0,
        augmentations: o.predict.augmentations,
      });
      emit({
        type: 'task_started',
        taskId: id,
        index,
        remaining,
        ...(worker !== undefined ? { worker } : {}),
        settings: { steps: plan.steps, augmentations: plan.augmentations },
      });
      const started = performance.now();
      return {
        id,
        task,
        started,
        plan,
        deadline: started + Math.min(o.taskTimeoutMs, plan.timeMs),
        status: 'done',
        error: undefined,
        train: undefined,
        predict: undefined,
        keptTrain: [],
        droppedTrain: [],
        byTest: task.test.map(() => null),
        adapter: undefined,
        ownMs: 0,
      };
    };

    /** Gets a task ready to predict: trains its adapter (kept in `slot` when given), or fits it. */
    const prepare = async (engine: TaskEngine, t: Slot, slot: number | undefined): Promise<void> => {
      const timeLeft = () => timeLeftOf(t.deadline);
      if (t.plan.timeMs <= 0) {
        throw new TimeoutError({
          operation: `task ${t.id}`,
          timeoutMs: 0,
          message: 'the time budget is spent',
        });
      }
      if (needAdapterReload && wholeSetAdapter !== undefined) {
        await engine.call('load_adapter', { path: wholeSetAdapter }, { timeoutMs: timeLeft(), ...signal });
      }
      needAdapterReload = false;
      if (o.mode === 'single-task' && t.plan.steps > 0) {
        const tuned = await fineTuneTask(
          engine,
          t.task,
          {
            ...text,
            ...o.train,
            steps: t.plan.steps,
            taskId: t.id,
            timeoutMs: timeLeft(),
            ...signal,
            ...(t.plan.trainSeconds !== undefined ? { maxTrainSeconds: t.plan.trainSeconds } : {}),
            ...(o.saveAdapters && files !== undefined
              ? { saveAdapter: join(files.dir, 'adapters', t.id) }
              : {}),
          },
          { onStep: (p: TrainProgress) => emit({ type: 'train_step', taskId: t.id, ...p }) },
        );
        t.train = {
          steps: tuned.steps,
          losses: tuned.losses,
          tokens: tuned.tokens,
          samples: tuned.samples,
          seconds: tuned.trainSeconds,
          ...(tuned.compileSeconds > 0 ? { compileSeconds: tuned.compileSeconds } : {}),
        };
        t.keptTrain = tuned.keptTrain;
        t.droppedTrain = tuned.droppedTrain;
      } else {
        // `none`, or no time left to train: the base model (a freshly reset LoRA is a no-op) or the whole-set adapter.
        if (o.mode !== 'whole-set') {
          await engine.call('reset_adapter', { seed: null }, { timeoutMs: timeLeft(), ...signal });
        }
        const fit = await fitTaskForEngine(engine, t.task, {
          ...text,
          taskId: t.id,
          timeoutMs: timeLeft(),
          ...signal,
        });
        t.keptTrain = fit.kept;
        t.droppedTrain = fit.dropped;
      }
      // In a group (single-task mode only) a later task's training replaces the live adapter: keep this one's.
      if (slot !== undefined) {
        const kept = await keepAdapter(engine, slot, { timeoutMs: timeLeft(), ...signal });
        t.adapter = slot;
        if (o.train.compile && kept.kept < o.tasksPerBatch) {
          // A new slot changes the adapter layout, and so recompiles the training graphs: make the group's
          // later slots now (their tasks overwrite them), so that the layout changes once per Python process.
          for (let s = slot + 1; s < o.tasksPerBatch; s++) {
            await keepAdapter(engine, s, { timeoutMs: timeLeft(), ...signal });
          }
        }
      }
    };

    /** Stores a task's predictions in its slot. */
    const store = (t: Slot, predicted: PredictResult) => {
      const tests: TestRecord[] = predicted.tests.map((x) => ({
        testIndex: x.testIndex,
        candidates: x.candidates.map((c) => ({
          grid: c.grid,
          votes: c.votes,
          meanLogProb: c.meanLogProb ?? null,
        })),
        failures: x.failures.length,
        views: x.predictions.length,
      }));
      t.predict = { tests, generatedTokens: predicted.generatedTokens, seconds: predicted.generateSeconds };
      for (const x of predicted.tests) {
        if (x.attempt1 !== null && x.attempt2 !== null)
          t.byTest[x.testIndex] = { attempt_1: x.attempt1, attempt_2: x.attempt2 };
      }
    };

    /** Predicts the ready tasks of a group in one generation batch (a group of one is plain `predictTask`). */
    const predictGroup = async (engine: TaskEngine, ready: Slot[]): Promise<void> => {
      const started = performance.now();
      let shares = ready.map(() => 1 / ready.length);
      try {
        const batch = await predictTasks(
          engine,
          ready.map((t) => ({
            task: t.task,
            taskId: t.id,
            keptTrain: t.keptTrain,
            augmentations: t.plan.augmentations,
            ...(t.adapter !== undefined ? { adapter: t.adapter } : {}),
          })),
          // The batch has the longest time left of its tasks.
          {
            ...text,
            ...o.predict,
            ...signal,
            timeoutMs: Math.max(...ready.map((t) => timeLeftOf(t.deadline))),
          },
        );
        for (const [k, t] of ready.entries()) store(t, batch.results[k]!);
        // Each task's share of the batch's wall time, as of its generation time (by generated tokens).
        if (batch.generateSeconds > 0)
          shares = batch.results.map((r) => r.generateSeconds / batch.generateSeconds);
      } finally {
        const wall = performance.now() - started;
        for (const [k, t] of ready.entries()) t.ownMs += wall * shares[k]!;
      }
    };

    const runLane = async (engine: TaskEngine, worker: number | undefined): Promise<void> => {
      const poolEngine = worker !== undefined ? pool?.engines[worker] : undefined;
      const groupSize = o.tasksPerBatch;
      for (;;) {
        if (context.signal?.aborted) {
          aborted = true;
          return;
        }
        if (poolEngine?.lost) {
          try {
            await poolEngine.recover();
          } catch {
            return; // retired: the other workers take the rest
          }
        }
        const group: string[] = queue.splice(0, groupSize);
        if (group.length === 0) {
          // A task in flight on another lane can still come back (its worker died): wait for it.
          if (inFlight === 0) return;
          await queueChanged();
          continue;
        }
        inFlight += group.length;
        try {
          const ready: Slot[] = [];
          const recorded: Slot[] = [];
          let lostGroup: unknown;
          for (const [j, id] of group.entries()) {
            if (lostGroup !== undefined) {
              queue.unshift(...group.slice(j));
              break;
            }
            const t = begin(id, worker, group.length - j);
            try {
              // In a group each task's adapter is kept in a slot: the next task's training replaces the live one.
              await prepare(engine, t, group.length > 1 && o.mode === 'single-task' ? j : undefined);
              t.ownMs += performance.now() - t.started;
              ready.push(t);
            } catch (caught) {
              t.ownMs += performance.now() - t.started;
              const what = classify(t, caught, worker);
              if (what === 'abort') {
                aborted = true;
                return;
              }
              if (what === 'recorded') recorded.push(t);
              if (restarts(caught) && ready.length > 0) {
                // Python restarted: the adapters kept for the group's earlier tasks are gone; they run again.
                for (const r of ready.splice(0).reverse()) {
                  if (!requeue(r.id, worker, caught)) {
                    r.status = 'failed';
                    r.error = {
                      type: 'AdapterLost',
                      message: `its kept adapter was lost when Python restarted (${t.id})`,
                    };
                    recorded.push(r);
                  }
                }
              }
              if (restarts(caught)) lostGroup = caught;
            }
          }
          // The tasks not yet started when the group was lost went back to the queue (above), in order.
          if (ready.length > 0) {
            try {
              await predictGroup(engine, ready);
            } catch (caught) {
              for (const t of ready) {
                const what = classify(t, caught, worker);
                if (what === 'abort') {
                  aborted = true;
                  return;
                }
                if (what === 'recorded') recorded.push(t);
              }
            }
            for (const t of ready) if (!recorded.includes(t) && !queue.includes(t.id)) recorded.push(t);
          }
          for (const t of recorded) await record(t);
          if (recorded.some((t) => t.status === 'timed_out')) scheduler.timedOut();
        } finally {
          inFlight -= group.length;
          notifyQueue();
        }
      }
    };
    // Every lane ends before the journal closes, also when one fails with an unexpected error.
    const ended = await Promise.allSettled(
      lanes.map((lane, k) => runLane(lane, pool !== undefined ? k : undefined)),
    );
    const failed = ended.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;

    // Every pool worker retired with tasks left: those fail, unjournalled, so that a resume runs them.
    if (!aborted && !context.signal?.aborted) {
      for (const id of queue.splice(0)) {
        const fallback: number[] = [];
        const attempts = fallbackAttempts(
          id,
          taskSet[id]!.test.map(() => null),
          fallback,
        );
        await finish(
          {
            type: 'task',
            taskId: id,
            status: 'failed',
            attempts,
            fallback,
            keptTrain: [],
            droppedTrain: [],
            train: undefined,
            predict: undefined,
            settings: { steps: 0, augmentations: 0 },
            error: { type: 'NoWorkerError', message: 'no Ray worker was left to run this task' },
            seconds: 0,
            finishedAt: new Date().toISOString(),
          },
          false,
        );
      }
    }
    await writing;

    const submission = await writeSubmissionNow();
    const records = ids.flatMap((id) => {
      const r = done.get(id);
      return r === undefined ? [] : [r];
    });
    const statusCounts: Record<TaskStatus, number> = {
      done: 0,
      too_long: 0,
      failed: 0,
      timed_out: 0,
      invalid: invalid.length,
    };
    for (const r of records) statusCounts[r.status]++;

    const solutions = solutionsOf(taskSet);
    let score: ScoreReport | undefined;
    if (solutions !== undefined && !aborted && records.length === ids.length) {
      // The invalid tasks count too where their solution is known: Kaggle scores their fallback answers.
      const scored = [...records];
      for (const r of invalidRecords) {
        const outputs =
          solutionsFile !== undefined && Object.hasOwn(solutionsFile, r.taskId)
            ? solutionsFile[r.taskId]
            : undefined;
        if (outputs === undefined || outputs.length !== r.attempts.length) continue;
        setEntry(solutions, r.taskId, outputs);
        scored.push(r);
      }
      score = scorePredictions(recordsToPredictions(scored), solutions);
    }
    if (files !== undefined && score !== undefined) {
      await writeJsonAtomic(files.metrics, {
        score: score.score,
        metrics: score.metrics,
        statusCounts,
        tasks: score.tasks,
      });
    } else if (files !== undefined) {
      // An earlier run's metrics would stand beside this run's submission as if they scored it.
      rmSync(files.metrics, { force: true });
    }
    if (files !== undefined) {
      await writeReport(files.report, {
        tasks: taskSet,
        records: [...records, ...invalidRecords],
        score,
        run: {
          mode: o.mode,
          model: engine.model.model,
          startedAt: runStartedAt,
          seconds: (performance.now() - started) / 1000,
          options: {
            format,
            maxSeqLen,
            seed: o.seed,
            lora: engineOptions.lora,
            train: o.train,
            predict: o.predict,
            taskTimeoutMs: o.taskTimeoutMs,
            timeBudgetMs: o.timeBudgetMs ?? null,
          },
        },
      });
    }
    const result: RunResult = {
      mode: o.mode,
      model: engine.model,
      submission,
      records,
      invalid,
      statusCounts,
      score,
      unknownOutputs: ids.filter((id) => taskSet[id]!.test.some((t) => t.output === undefined)),
      seconds: (performance.now() - started) / 1000,
      aborted,
      files,
    };
    emit({ type: 'run_finished', result });
    return result;
  } finally {
    // First: whatever fails below, the folder must not stay locked for the rest of this process.
    lock?.release();
    journal?.close();
    if (ownEngine) await localEngine?.close();
    if (ownPool) await pool?.close();
    for (const dir of temp) rmSync(dir, { recursive: true, force: true });
  }
}
