/**
 * The accuracy study of issue #5: the three modes of `runSingleTaskTTFT` (single-task TTFT, one
 * whole-set adapter, no fine-tuning) on a fixed list of ARC-AGI-1 evaluation tasks, with the same seeds
 * and options and the same total number of training steps for the two fine-tuning modes, scored with
 * src/score.ts. Each mode's run folder (journal, submission, report) lives under the out folder, so a
 * stopped study resumes where it stopped. The results JSON and docs/results.md are generated from the
 * journals, never typed in.
 *
 * The runs are given the tasks **without** their test outputs: no code path can see a solution. The
 * solutions are used only here, after the runs, to score what they wrote.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { writeJsonAtomic } from '../../src/data/fs.js';
import { loadTasks } from '../../src/data/load.js';
import { parseOptions } from '../../src/data/validate.js';
import { ArcTtftError, FileError, ValidationError } from '../../src/errors.js';
import { buildTrainingText, largestAnswerShape, maxAnswerChars } from '../../src/format/prompt.js';
import { hashString } from '../../src/rng.js';
import { buildTrainingSamples } from '../../src/samples.js';
import type { Solutions, Submission, TaskSet } from '../../src/schemas.js';
import { type Metrics, type ScoreReport, scorePredictions, scoreSubmission } from '../../src/score.js';
import { createEngine, type ModelInfo, resolveModelPath } from '../../src/ttft/engine.js';
import {
  type RunMode,
  recordsToPredictions,
  type TaskRecord,
  type TaskStatus,
} from '../../src/ttft/records.js';
import {
  type RunEvent,
  type RunOptions,
  RunOptionsSchema,
  type RunResult,
  runSingleTaskTTFT,
} from '../../src/ttft/run.js';
import { VERSION } from '../../src/version.js';
import { renderResultsMarkdown } from './render.js';
import { ARC1_EVALUATION, ROOT, readTaskList, TASKS_FILE, type TaskList } from './tasks.js';

/** The three modes, in the order they run and are reported. */
export const MODES = ['single-task', 'whole-set', 'none'] as const satisfies readonly RunMode[];

/**
 * What the start-of-run estimate assumes for the embedded model's architecture (hidden 128, 4 layers) on
 * a quiet 2-core CPU with one torch thread, measured on 8 tasks of the list (bench/README.md): training
 * tokens per second at batch 1, seconds per decoding step of one batch of views, per-task overhead, and
 * the engine start. A busy machine is slower (about 1.6× at a load average of 5).
 */
export const ESTIMATE_RATES = {
  trainTokensPerSecond: 4500,
  secondsPerDecodeStep: 0.012,
  secondsPerTask: 0.4,
  startSeconds: 15,
} as const;

/** Options of {@link runAccuracyStudy}. */
export const StudyOptionsSchema = z.strictObject({
  /**
   * Folder of ARC-AGI-1 evaluation tasks (`<id>.json`, with their test outputs).
   * @default '../shared/arc-data/arc-agi-1/evaluation'
   */
  data: z.string().min(1).default(ARC1_EVALUATION),
  /**
   * The task list (bench/accuracy/tasks.json).
   * @default 'bench/accuracy/tasks.json'
   */
  tasksFile: z.string().min(1).default(TASKS_FILE),
  /** Only the first N tasks of the list; default: all. */
  limit: z.number().int().positive().optional(),
  /**
   * Modes to run, in this order.
   * @default ['single-task', 'whole-set', 'none']
   */
  modes: z
    .array(z.enum(MODES))
    .min(1)
    .default([...MODES]),
  /**
   * Base model (`'embedded'`, a folder, or a Hugging Face id).
   * @default 'embedded'
   */
  model: z.string().min(1).default('embedded'),
  /**
   * Training steps per task (single-task); whole-set trains steps × tasks in all. The run's default
   * (arc24 used about 300).
   * @default 300
   */
  steps: z.number().int().positive().default(300),
  /**
   * Peak learning rate.
   * @default 1e-3
   */
  lr: z.number().positive().default(1e-3),
  /**
   * LoRA rank; alpha is 2 × rank (the engine's default ratio, 32/16).
   * @default 16
   */
  rank: z.number().int().positive().default(16),
  /**
   * Inference views per test input (`predict.augmentations`).
   * @default 8
   */
  augmentations: z.number().int().positive().default(8),
  /**
   * Augmented training samples per leave-one-out target (`train.augmentationsPerPair`).
   * @default 32
   */
  trainAugmentations: z.number().int().positive().default(32),
  /**
   * Also train the embeddings and output layer (`lora.modulesToSave`), as the ARChitects did.
   * @default false
   */
  trainEmbeddings: z.boolean().default(false),
  /**
   * Seed of every run (augmentations, sample order, adapter init).
   * @default 0
   */
  seed: z.number().int().default(0),
  /**
   * Torch CPU threads. One: at batch 1 the model is too small to gain from a second thread, and with
   * two, any other process on a 2-core CPU makes training about 20× slower (measured).
   * @default 1
   */
  threads: z.number().int().positive().default(1),
  /** Python interpreter; default as for `createEngine`. */
  pythonBin: z.string().min(1).optional(),
  /**
   * Root of the run folders; each setting gets its own sub-folder, so re-running continues.
   * @default '.cache/accuracy'
   */
  out: z.string().min(1).default(join(ROOT, '.cache/accuracy')),
  /**
   * The Markdown report; the results JSON goes beside it (same name, `.json`).
   * @default 'docs/results.md'
   */
  results: z.string().min(1).default(join(ROOT, 'docs/results.md')),
  /**
   * Continue from the journals; `false` starts every mode over.
   * @default true
   */
  resume: z.boolean().default(true),
  /** The command line, recorded in the results (set by run.ts). */
  command: z.string().optional(),
});
/** Options of {@link runAccuracyStudy}. */
export type StudyOptions = z.input<typeof StudyOptionsSchema>;
/** Options of {@link runAccuracyStudy}, defaults filled in. */
export type ResolvedStudyOptions = z.output<typeof StudyOptionsSchema>;

/** Scores of one task in one mode. */
export interface TaskOutcome {
  /** How the task ended. */
  readonly status: TaskStatus;
  /** arc24's metrics of the task (mean over its test outputs). */
  readonly vote2: number;
  readonly accuracy: number;
  readonly passN: number;
  readonly correctSize: number;
  /** Training steps the task got (0 in modes `whole-set` and `none`). */
  readonly steps: number;
}

/** The result of one mode. */
export interface ModeResult {
  /** The mode. */
  readonly mode: RunMode;
  /** Its run folder, relative to the repository root when inside it. */
  readonly dir: string;
  /** Tasks scored. */
  readonly tasks: number;
  /** Tasks per status. */
  readonly statusCounts: Readonly<Record<TaskStatus, number>>;
  /** arc24's metrics over every prediction (src/score.ts `scorePredictions`), mean over tasks. */
  readonly metrics: Metrics;
  /** The Kaggle score of the written submission.json (`scoreSubmission`); equals `metrics.vote2`. */
  readonly kaggleScore: number;
  /** Tasks whose every test output was matched by attempt 1 or 2. */
  readonly solved: readonly string[];
  /** Optimizer steps trained in all (single-task: sum over tasks; whole-set: the shared adapter). */
  readonly trainSteps: number;
  /** Tokens trained on in all; `null` for whole-set (its journal line does not record them). */
  readonly trainTokens: number | null;
  /** Seconds in Python training, in all. */
  readonly trainSeconds: number;
  /** Seconds in Python generating, in all. */
  readonly predictSeconds: number;
  /** Wall seconds of the mode: every task's seconds plus the whole-set training (from the journal). */
  readonly seconds: number;
  /** Tasks that an earlier invocation had already finished (resumed from the journal). */
  readonly resumed: number;
  /** Per task, in list order. */
  readonly perTask: Readonly<Record<string, TaskOutcome>>;
}

/** One earlier (or this) setting found under the out folder, for "what was tried". */
export interface TriedSetting {
  readonly label: string;
  readonly date: string;
  readonly model: string;
  readonly tasks: number;
  readonly steps: number;
  readonly lr: number;
  readonly rank: number;
  readonly augmentations: number;
  readonly trainAugmentations: number;
  readonly trainEmbeddings: boolean;
  /** vote_2 per mode that ran. */
  readonly vote2: Readonly<Partial<Record<RunMode, number>>>;
}

/** Everything the study produced: what results.json holds and docs/results.md is rendered from. */
export interface StudyResults {
  readonly study: 'arc-ttft-accuracy/1';
  readonly version: string;
  /** ISO time the study (this invocation) started and finished. */
  readonly startedAt: string;
  readonly finishedAt: string;
  /** The command line, when run from run.ts. */
  readonly command: string | null;
  /** Wall seconds of this invocation (engine start included). */
  readonly invocationSeconds: number;
  /** The start-of-run estimate, seconds, for the tasks still to run. */
  readonly estimateSeconds: number;
  /** The machine. */
  readonly machine: {
    readonly cpu: string;
    readonly cores: number;
    readonly memoryGiB: number;
    readonly platform: string;
    readonly node: string;
    readonly python: string | null;
    readonly torch: string | null;
    readonly transformers: string | null;
    readonly peft: string | null;
    readonly device: string;
    readonly dtype: string;
    readonly threads: number;
    /** 1-minute load average when the study started and ended (the machine may be shared). */
    readonly loadAverage: readonly [start: number, end: number];
  };
  /** The base model. */
  readonly model: {
    readonly name: string;
    readonly path: string;
    readonly info: ModelInfo;
    /** sha256 of model.safetensors (first 16 hex digits), when the folder has one. */
    readonly weightsSha256: string | null;
    /** From the model folder's training.json (pretraining), when present. */
    readonly training: Record<string, unknown> | null;
  };
  /** The task list used. */
  readonly taskList: {
    readonly file: string;
    readonly rule: string;
    readonly ids: readonly string[];
    /** Worst-case tokens per task (compact, every pair), from the list. */
    readonly tokens: Readonly<Record<string, number>>;
  };
  /** The study options (defaults filled in; paths relative to the repository root where inside it). */
  readonly options: Omit<ResolvedStudyOptions, 'command' | 'pythonBin'>;
  /** The options every mode's `runSingleTaskTTFT` got, `mode` and `out` aside, with every default filled in. */
  readonly runOptions: Record<string, unknown>;
  /** One per mode, in run order. */
  readonly modes: readonly ModeResult[];
  /** Every setting found under the out folder (this one included), for "what was tried". */
  readonly tried: readonly TriedSetting[];
}

/** Hooks of {@link runAccuracyStudy}. */
export interface StudyHooks {
  /** Progress lines (default: none). */
  readonly log?: (line: string) => void;
  /** Stops the study (the run in flight stops; re-running resumes). */
  readonly signal?: AbortSignal;
}

/** A path relative to the repository root when inside it (results are committed). */
function rel(path: string): string {
  const r = relative(ROOT, resolve(path));
  // Inside the repository, or beside it (../shared/arc-data): relative; elsewhere: absolute.
  const outside = r.startsWith('../..') || r === '..' || isAbsolute(r);
  return outside ? resolve(path) : r;
}

interface JournalContent {
  readonly records: Map<string, TaskRecord>;
  readonly wholeSet: { steps: number; seconds: number; samples: number } | undefined;
}

/** Reads a run's journal (results.jsonl); a torn last line is ignored, as the run does. */
export function readJournal(path: string): JournalContent {
  const records = new Map<string, TaskRecord>();
  let wholeSet: JournalContent['wholeSet'];
  if (!existsSync(path)) return { records, wholeSet };
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    let value: { type?: string; steps?: number; seconds?: number; samples?: number; taskId?: string };
    try {
      value = JSON.parse(line);
    } catch {
      continue;
    }
    if (value.type === 'task' && typeof value.taskId === 'string') {
      records.set(value.taskId, value as TaskRecord);
    } else if (value.type === 'whole_set') {
      wholeSet = { steps: value.steps ?? 0, seconds: value.seconds ?? 0, samples: value.samples ?? 0 };
    }
  }
  return { records, wholeSet };
}

/**
 * Scores one mode's run folder against the solutions: arc24's metrics from the journal's predictions
 * and the Kaggle score of submission.json, which must agree on vote_2.
 *
 * @throws {ValidationError} when the folder misses a task, or the two scores disagree.
 */
export function scoreRunFolder(
  dir: string,
  solutions: Solutions,
): { report: ScoreReport; kaggleScore: number; journal: JournalContent } {
  const journal = readJournal(join(dir, 'results.jsonl'));
  const ids = Object.keys(solutions);
  const missing = ids.filter((id) => !journal.records.has(id));
  if (missing.length > 0) {
    throw new ValidationError({
      source: join(dir, 'results.jsonl'),
      issues: [
        {
          path: '',
          message: `the journal has no record of ${missing.length} task(s): ${missing.join(', ')}`,
        },
      ],
    });
  }
  const records = ids.map((id) => journal.records.get(id)!);
  const report = scorePredictions(recordsToPredictions(records), solutions);
  const submission = JSON.parse(readFileSync(join(dir, 'submission.json'), 'utf8')) as Submission;
  const kaggleScore = scoreSubmission(submission, solutions).score;
  if (Math.abs(kaggleScore - report.metrics.vote2) > 1e-9) {
    throw new ValidationError({
      source: join(dir, 'submission.json'),
      issues: [
        {
          path: '',
          message: `the submission scores ${kaggleScore} but the journal's attempts give vote_2 ${report.metrics.vote2}`,
        },
      ],
    });
  }
  return { report, kaggleScore, journal };
}

function modeResult(mode: RunMode, dir: string, solutions: Solutions, resumed: number): ModeResult {
  const { report, kaggleScore, journal } = scoreRunFolder(dir, solutions);
  const statusCounts: Record<TaskStatus, number> = {
    done: 0,
    too_long: 0,
    failed: 0,
    timed_out: 0,
    invalid: 0,
  };
  const perTask: Record<string, TaskOutcome> = {};
  let trainSteps = journal.wholeSet?.steps ?? 0;
  let trainTokens = 0;
  let trainSeconds = journal.wholeSet?.seconds ?? 0;
  let predictSeconds = 0;
  let seconds = journal.wholeSet?.seconds ?? 0;
  for (const id of Object.keys(solutions)) {
    const r = journal.records.get(id)!;
    const m = report.tasks[id]!.metrics;
    statusCounts[r.status]++;
    trainSteps += r.train?.steps ?? 0;
    trainTokens += r.train?.tokens ?? 0;
    trainSeconds += r.train?.seconds ?? 0;
    predictSeconds += r.predict?.seconds ?? 0;
    seconds += r.seconds;
    perTask[id] = {
      status: r.status,
      vote2: m.vote2,
      accuracy: m.accuracy,
      passN: m.passN,
      correctSize: m.correctSize,
      steps: r.train?.steps ?? 0,
    };
  }
  return {
    mode,
    dir: rel(dir),
    tasks: report.nTasks,
    statusCounts,
    metrics: report.metrics,
    kaggleScore,
    solved: Object.entries(report.tasks)
      .filter(([, t]) => t.score === 1)
      .map(([id]) => id),
    trainSteps,
    // The whole-set adapter's tokens are not journaled; its steps and seconds are.
    trainTokens: journal.wholeSet === undefined ? trainTokens : null,
    trainSeconds,
    predictSeconds,
    seconds,
    resumed,
    perTask,
  };
}

/** The options shared by every mode (the mode and the folder aside). */
export function commonRunOptions(o: ResolvedStudyOptions): Omit<RunOptions, 'mode' | 'out'> {
  return {
    engine: {
      model: o.model,
      lora: {
        r: o.rank,
        alpha: 2 * o.rank,
        modulesToSave: o.trainEmbeddings ? ['embed_tokens', 'lm_head'] : null,
      },
      seed: o.seed,
      threads: o.threads,
      ...(o.pythonBin !== undefined ? { pythonBin: o.pythonBin } : {}),
    },
    seed: o.seed,
    train: { steps: o.steps, lr: o.lr, augmentationsPerPair: o.trainAugmentations, progressEvery: 10 },
    predict: { augmentations: o.augmentations },
    resume: o.resume,
  };
}

/**
 * The folder of one setting: readable settings plus a hash of everything that changes results, the
 * model's weights included (a retrained `embedded` model must not resume an old journal).
 */
export function settingLabel(o: ResolvedStudyOptions, ids: readonly string[]): string {
  const common = commonRunOptions(o);
  const { pythonBin: _p, threads: _t, ...engine } = common.engine ?? {};
  const path = resolveModelPath(o.model);
  const weights = existsSync(path) ? sha256Prefix(join(path, 'model.safetensors')) : null;
  const key = JSON.stringify({ ...common, engine, resume: null, ids, path, weights });
  const model = o.model.replace(/[^A-Za-z0-9._-]+/g, '_').slice(-40);
  const lr = o.lr.toExponential().replace('+', '');
  return `${model}-n${ids.length}-s${o.steps}-lr${lr}-r${o.rank}-v${o.augmentations}-${hashString(key).toString(16).padStart(8, '0')}`;
}

function sha256Prefix(path: string): string | null {
  if (!existsSync(path)) return null;
  return createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16);
}

function trainingSummary(dir: string): Record<string, unknown> | null {
  const path = join(dir, 'training.json');
  if (!existsSync(path)) return null;
  try {
    const t = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    const heldout = t.heldout as { exact?: number; loss?: number; n?: number } | undefined;
    return {
      steps: t.steps ?? null,
      tokens: t.tokens ?? null,
      wallSeconds: t.wall_seconds ?? null,
      finalLoss: t.final_loss ?? null,
      heldoutExact: heldout?.exact ?? null,
      heldoutLoss: heldout?.loss ?? null,
      heldoutSamples: heldout?.n ?? null,
      command: t.command ?? null,
    };
  } catch {
    return null;
  }
}

/**
 * The start-of-run estimate, seconds, from the tasks' exact training sample lengths (built as the run
 * builds them) and their largest possible answers, at {@link ESTIMATE_RATES}.
 */
export function estimateStudySeconds(
  tasks: TaskSet,
  o: ResolvedStudyOptions,
  todo: Readonly<Record<RunMode, readonly string[]>>,
): number {
  const meanSample = new Map<string, number>();
  for (const [id, task] of Object.entries(tasks)) {
    const samples = buildTrainingSamples(
      task,
      { seed: o.seed, augmentationsPerPair: o.trainAugmentations },
      id,
    );
    const lengths = samples.map((s) => {
      const t = buildTrainingText(s.train, s.target, 'compact');
      return t.prompt.length + t.answer.length + 1;
    });
    meanSample.set(id, lengths.reduce((a, b) => a + b, 0) / Math.max(1, lengths.length));
  }
  const predict = (id: string) => {
    const task = tasks[id]!;
    const [rows, cols] = largestAnswerShape(task);
    return (
      task.test.length * (maxAnswerChars('compact', rows, cols) + 1) * ESTIMATE_RATES.secondsPerDecodeStep
    );
  };
  let seconds = ESTIMATE_RATES.startSeconds;
  for (const mode of o.modes) {
    const ids = todo[mode];
    for (const id of ids) seconds += predict(id) + ESTIMATE_RATES.secondsPerTask;
    if (mode === 'single-task') {
      for (const id of ids) seconds += (o.steps * meanSample.get(id)!) / ESTIMATE_RATES.trainTokensPerSecond;
    } else if (mode === 'whole-set' && ids.length > 0) {
      const all = Object.keys(tasks);
      const mean = all.reduce((a, id) => a + meanSample.get(id)!, 0) / all.length;
      seconds += (o.steps * all.length * mean) / ESTIMATE_RATES.trainTokensPerSecond;
    }
  }
  return seconds;
}

/** Reads every setting's results.json under the out folder. */
function collectTried(outRoot: string): TriedSetting[] {
  if (!existsSync(outRoot)) return [];
  const tried: TriedSetting[] = [];
  for (const name of readdirSync(outRoot).sort()) {
    const path = join(outRoot, name, 'results.json');
    if (!existsSync(path)) continue;
    try {
      const r = JSON.parse(readFileSync(path, 'utf8')) as StudyResults;
      tried.push(summarise(r, name));
    } catch {
      // A results file from another version: not listed.
    }
  }
  return tried;
}

function summarise(r: StudyResults, label: string): TriedSetting {
  const vote2: Partial<Record<RunMode, number>> = {};
  for (const m of r.modes) vote2[m.mode] = m.metrics.vote2;
  return {
    label,
    date: r.finishedAt,
    model: r.model.name,
    tasks: r.taskList.ids.length,
    steps: r.options.steps,
    lr: r.options.lr,
    rank: r.options.rank,
    augmentations: r.options.augmentations,
    trainAugmentations: r.options.trainAugmentations,
    trainEmbeddings: r.options.trainEmbeddings,
    vote2,
  };
}

function fmtDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - 60 * m);
  return m > 0 ? `${m} min ${String(s).padStart(2, '0')} s` : `${seconds.toFixed(1)} s`;
}

/** What a study will do, before it starts: tasks, folder, what is left, the estimate. */
export interface StudyPlan {
  /** The options, defaults filled in. */
  readonly options: ResolvedStudyOptions;
  /** The task list read. */
  readonly list: TaskList;
  /** Task ids, in list order. */
  readonly ids: readonly string[];
  /** The tasks without their test outputs (what the runs get). */
  readonly blind: TaskSet;
  /** The test outputs (only the scoring sees them). */
  readonly solutions: Solutions;
  /** The setting's folder (`<out>/<label>`). */
  readonly dir: string;
  /** Tasks still to run, per mode (resume). */
  readonly todo: Readonly<Record<RunMode, readonly string[]>>;
  /** Estimated seconds for what is left. */
  readonly estimateSeconds: number;
}

/**
 * Reads the task list and the tasks, and works out the folder, what is left to run and how long it should
 * take; starts nothing. @throws {ValidationError} / {FileError}
 */
export async function planStudy(options?: StudyOptions): Promise<StudyPlan> {
  const o = parseOptions(StudyOptionsSchema, options, 'runAccuracyStudy');
  const list = readTaskList(o.tasksFile);
  const chosen = o.limit !== undefined ? list.tasks.slice(0, o.limit) : list.tasks;
  const ids = chosen.map((t) => t.id);
  if (!existsSync(o.data)) {
    throw new FileError({ path: o.data, message: 'the ARC-AGI-1 evaluation folder is missing' });
  }
  const { tasks: full } = await loadTasks(o.data, { only: ids });
  const solutions: Solutions = {};
  const blind: TaskSet = {};
  for (const id of ids) {
    const task = full[id]!;
    solutions[id] = task.test.map((t, i) => {
      if (t.output === undefined) {
        throw new ValidationError({
          source: o.data,
          taskId: id,
          issues: [{ path: `test[${i}].output`, message: 'the study needs the test outputs to score' }],
        });
      }
      return t.output;
    });
    // The runs get the tasks without their test outputs: no code path can see a solution.
    blind[id] = { train: task.train, test: task.test.map((t) => ({ input: t.input })) };
  }
  const dir = join(resolve(o.out), settingLabel(o, ids));
  const todo = {} as Record<RunMode, string[]>;
  for (const mode of MODES) {
    const done = o.resume ? readJournal(join(dir, mode, 'results.jsonl')).records : new Map();
    // As the run resumes (retryFailed): failed and timed-out tasks run again.
    const finished = (id: string) => {
      const status = done.get(id)?.status;
      return status !== undefined && status !== 'failed' && status !== 'timed_out' && status !== 'invalid';
    };
    todo[mode] = ids.filter((id) => !finished(id));
  }
  return {
    options: o,
    list,
    ids,
    blind,
    solutions,
    dir,
    todo,
    estimateSeconds: estimateStudySeconds(blind, o, todo),
  };
}

/**
 * Runs the study: loads the task list, starts one engine (one loaded model for every mode), runs each
 * mode into `<out>/<setting>/<mode>` (resuming from the journals), scores the folders, and writes
 * `<out>/<setting>/results.json`, the results JSON beside `results` and the Markdown at `results`.
 *
 * @throws {ValidationError} for bad options or task list; {@link FileError} when the data is missing.
 */
export async function runAccuracyStudy(
  options?: StudyOptions,
  hooks: StudyHooks = {},
): Promise<StudyResults> {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const loadStart = loadavg()[0] ?? 0;
  const log = hooks.log ?? (() => {});
  const plan = await planStudy(options);
  const { options: o, list, ids, blind, solutions, todo, estimateSeconds } = plan;
  const settingDir = plan.dir;
  mkdirSync(settingDir, { recursive: true });
  const common = commonRunOptions(o);
  const resolvedRun = RunOptionsSchema.parse({ ...common, mode: 'single-task' });
  const { mode: _m, out: _o, ...runOptions } = resolvedRun;
  log(
    `accuracy study: ${ids.length} tasks × ${o.modes.join(', ')}; ${o.steps} steps/task, lr ${o.lr}, rank ${o.rank}, ` +
      `${o.augmentations} views; folder ${rel(settingDir)}`,
  );
  log(
    `estimate: ${fmtDuration(estimateSeconds)} for what is left (${o.modes.map((m) => `${m} ${todo[m].length}`).join(', ')} tasks to run), ` +
      `at ${ESTIMATE_RATES.trainTokensPerSecond} train tokens/s and ${1000 * ESTIMATE_RATES.secondsPerDecodeStep} ms per decode step (quiet 2-core CPU, embedded model; a busy machine is slower)`,
  );

  const engine = await createEngine(common.engine ?? {});
  const modes: ModeResult[] = [];
  let ping: { python?: string; torch?: string; transformers?: string; peft?: string } = {};
  try {
    ping = await engine.call('ping');
    log(
      `model: ${engine.model.model} (${engine.model.nParams.toLocaleString('en-US')} params, ${engine.model.device})${engine.model.embeddedStandIn ? ' — the random stand-in: scores are noise' : ''}`,
    );
    for (const mode of o.modes) {
      const dir = join(settingDir, mode);
      const resumed = o.resume ? ids.length - todo[mode].length : 0;
      const modeStart = performance.now();
      let ran = 0;
      let taskSeconds = 0;
      const onEvent = (e: RunEvent) => {
        if (e.type === 'whole_set_started')
          log(`${mode}: training one adapter, ${e.steps} steps on ${e.samples} samples`);
        else if (
          e.type === 'train_step' &&
          e.taskId === '*' &&
          (e.step % Math.max(1, Math.round(e.steps / 10)) === 0 || e.step === e.steps)
        ) {
          log(
            `${mode}: step ${e.step}/${e.steps} loss ${e.loss?.toFixed(3) ?? '-'} (${fmtDuration((performance.now() - modeStart) / 1000)})`,
          );
        } else if (e.type === 'task_finished') {
          const r = e.record;
          const loss = r.train?.losses.at(-1);
          ran++;
          taskSeconds += r.seconds;
          const eta = (taskSeconds / ran) * (e.total - e.done);
          log(
            `${mode} ${e.done}/${e.total} ${r.taskId} ${r.status} ${r.seconds.toFixed(1)}s` +
              (typeof loss === 'number' ? ` loss ${loss.toFixed(3)}` : '') +
              (r.error ? ` (${r.error.type}: ${r.error.message.slice(0, 80)})` : '') +
              (e.done < e.total ? `, ~${fmtDuration(eta)} left in this mode` : ''),
          );
        }
      };
      const stopped = () => new ArcTtftError(`stopped in mode ${mode}; run the same command again to resume`);
      let result: RunResult;
      try {
        result = await runSingleTaskTTFT(
          blind,
          { ...common, mode, out: dir },
          { engine, onEvent, ...(hooks.signal !== undefined ? { signal: hooks.signal } : {}) },
        );
      } catch (error) {
        // Stopping during the whole-set training surfaces as the abort itself, not as `aborted`.
        throw hooks.signal?.aborted ? stopped() : error;
      }
      if (result.aborted) throw stopped();
      const m = modeResult(mode, dir, solutions, resumed);
      modes.push(m);
      log(
        `${mode}: vote_2 ${(100 * m.metrics.vote2).toFixed(1)}%, accuracy ${(100 * m.metrics.accuracy).toFixed(1)}%, ${m.solved.length} solved, ${fmtDuration(m.seconds)}`,
      );
    }
  } finally {
    await engine.close();
  }

  const info = engine.model;
  const modelPath = info.model;
  const studyOptions = {
    ...o,
    data: rel(o.data),
    tasksFile: rel(o.tasksFile),
    out: rel(o.out),
    results: rel(o.results),
  };
  const { command: _c, pythonBin: _pb, ...recorded } = studyOptions;
  const engineRecorded = { ...(runOptions.engine as Record<string, unknown>) };
  delete engineRecorded.pythonBin;
  const partial: Omit<StudyResults, 'tried'> = {
    study: 'arc-ttft-accuracy/1',
    version: VERSION,
    startedAt,
    finishedAt: new Date().toISOString(),
    command: o.command ?? null,
    invocationSeconds: (performance.now() - started) / 1000,
    estimateSeconds,
    machine: {
      cpu: cpus()[0]?.model.trim() ?? 'unknown',
      cores: cpus().length,
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      platform: `${platform()} ${release()}`,
      node: process.version,
      python: ping.python ?? null,
      torch: ping.torch ?? null,
      transformers: ping.transformers ?? null,
      peft: ping.peft ?? null,
      device: info.device,
      dtype: info.dtype,
      threads: o.threads,
      loadAverage: [loadStart, loadavg()[0] ?? 0],
    },
    model: {
      name: o.model === 'embedded' && info.embeddedStandIn ? 'embedded (random stand-in)' : o.model,
      path: rel(modelPath),
      info: { ...info, model: rel(info.model) },
      weightsSha256: existsSync(modelPath) ? sha256Prefix(join(modelPath, 'model.safetensors')) : null,
      training: existsSync(modelPath) ? trainingSummary(modelPath) : null,
    },
    taskList: {
      file: rel(o.tasksFile),
      rule: list.rule,
      ids,
      tokens: Object.fromEntries(list.tasks.filter((t) => ids.includes(t.id)).map((t) => [t.id, t.tokens])),
    },
    options: recorded,
    runOptions: { ...runOptions, engine: engineRecorded },
    modes,
  };
  // This setting's results first, so "what was tried" lists it with the others.
  await writeJsonAtomic(join(settingDir, 'results.json'), { ...partial, tried: [] });
  const results: StudyResults = { ...partial, tried: collectTried(resolve(o.out)) };
  await writeJsonAtomic(join(settingDir, 'results.json'), results, { pretty: true });
  const mdPath = resolve(o.results);
  await writeJsonAtomic(`${mdPath.replace(/\.md$/, '')}.json`, results, { pretty: true });
  mkdirSync(resolve(mdPath, '..'), { recursive: true });
  writeFileSync(mdPath, renderResultsMarkdown(results));
  return results;
}
