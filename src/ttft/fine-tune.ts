/**
 * `fineTuneTask`: fit the task into the token budget, build its leave-one-out augmented samples,
 * reset the adapter in place and train it on them.
 *
 * @module
 */
import { resolve } from 'node:path';
import { z } from 'zod';
import { ColourPermutationSchema, TransformSchema } from '../augment.js';
import { DropStrategySchema, type FitSuccess, fitTask } from '../budget.js';
import { parseOptions, validateTask } from '../data/validate.js';
import { ValidationError } from '../errors.js';
import { GridFormatNameSchema } from '../format/encodings.js';
import { buildTrainingText, PromptStyleSchema } from '../format/prompt.js';
import { buildTrainingSamples } from '../samples.js';
import { MAX_BATCH_SIZE, SeedSchema, type Task, TaskIdSchema, TimeoutMsSchema } from '../schemas.js';
import type { TaskEngine, TrainProgress } from './engine.js';

/** Options both {@link fineTuneTask} and {@link predictTask} share: how the task is laid out as text. */
export const TaskTextOptionsSchema = z.strictObject({
  /**
   * Task id, for results, error messages and per-task seeds.
   * @default 'task'
   */
  taskId: TaskIdSchema.default('task'),
  /** Grid format; default: the engine's. */
  format: GridFormatNameSchema.optional(),
  /**
   * Prompt style (`chatml` wraps arc24 prompts in Qwen's chat template).
   * @default 'plain'
   */
  style: PromptStyleSchema.default('plain'),
  /** Longest sequence (prompt + answer + EOS); default: the engine's. */
  maxSeqLen: z.number().int().positive().optional(),
  /**
   * Which train pair to drop first when the task does not fit.
   * @default 'random'
   */
  dropStrategy: DropStrategySchema.default('random'),
  /**
   * Seed of everything random for this task (combined with `taskId`).
   * @default 0
   */
  seed: SeedSchema.default(0),
  /** Time limit of each engine call for this task (ms); default: the engine's `callTimeoutMs`. */
  timeoutMs: TimeoutMsSchema.optional(),
  /** Cancels the task: a running engine call stops Python (it restarts for the next call). */
  signal: z.custom<AbortSignal>((value) => value instanceof AbortSignal, 'must be an AbortSignal').optional(),
});

/** The bridge call options (time limit, cancellation) of a task's options. */
export function callOptionsOf(o: { timeoutMs?: number | undefined; signal?: AbortSignal | undefined }): {
  timeoutMs?: number;
  signal?: AbortSignal;
} {
  return {
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    ...(o.signal !== undefined ? { signal: o.signal } : {}),
  };
}

/** Options of {@link fineTuneTask}. */
export const FineTuneOptionsSchema = TaskTextOptionsSchema.extend({
  /**
   * Optimizer steps (arc24 used ~300 per task).
   * @default 300
   */
  steps: z.number().int().positive().default(300),
  /**
   * Samples per micro-batch.
   * @default 1
   */
  batchSize: z.number().int().positive().max(MAX_BATCH_SIZE).default(1),
  /**
   * Micro-batches per optimizer step.
   * @default 1
   */
  gradAccum: z.number().int().positive().max(MAX_BATCH_SIZE).default(1),
  /**
   * Pack each step's `batchSize × gradAccum` samples back to back into rows, `batchSize` rows per
   * forward pass (position ids restart per sample, so each sample attends only to itself): the same
   * loss and gradients as unpacked training, without padding. Rows are as long as the step's longest
   * sample, or `maxSeqLen` under flash attention. No effect with one sample per step.
   * @default true
   */
  pack: z.boolean().default(true),
  /**
   * Run the forward pass over packed rows through `torch.compile` (dynamic shapes: one compile serves
   * every row length and every later task; the first step of the process pays it, from seconds on a
   * tiny model to minutes on a large one). The loss and gradients equal the eager ones up to float
   * rounding. Needs `pack` (a `ValidationError` otherwise). Whether it pays depends on the model and
   * the device: measure it with the benchmarks first (docs/performance.md). With {@link keepAdapter},
   * keep every slot before training: a new slot changes the adapter layout and recompiles (a run does
   * this itself).
   * @default false
   */
  compile: z.boolean().default(false),
  /**
   * Peak learning rate (linear warm-up, then linear decay to 0).
   * @default 1e-4
   */
  lr: z.number().positive().default(1e-4),
  /**
   * Share of the steps spent warming up.
   * @default 0.1
   */
  warmupRatio: z.number().min(0).max(1).default(0.1),
  /**
   * AdamW weight decay.
   * @default 0
   */
  weightDecay: z.number().min(0).default(0),
  /**
   * Augmented samples per leave-one-out target (see `buildTrainingSamples`).
   * @default 32
   */
  augmentationsPerPair: z.number().int().positive().default(32),
  /**
   * Most training samples (MARC caps at 250).
   * @default 250
   */
  maxSamples: z.number().int().positive().default(250),
  /** Geometric transforms to draw from; default all 8. */
  transforms: z.array(TransformSchema).min(1).optional(),
  /**
   * Colour permutations: `none`, `keep-background` (0 stays 0) or `all`.
   * @default 'keep-background'
   */
  colourPermutation: ColourPermutationSchema.default('keep-background'),
  /**
   * Shuffle the context pairs of each sample.
   * @default true
   */
  shuffleTrain: z.boolean().default(true),
  /**
   * Reset the adapter to its initial state first (turn off only to continue training the same task).
   * @default true
   */
  reset: z.boolean().default(true),
  /** Save the trained adapter here in PEFT's format (loadable by PEFT or vLLM elsewhere). */
  saveAdapter: z.string().min(1).optional(),
  /**
   * Report progress to `hooks.onStep` every N steps (0 = never).
   * @default 10
   */
  progressEvery: z.number().int().nonnegative().default(10),
  /** Stop training after this many seconds (at least one step runs; `steps` in the result says how many did). */
  maxTrainSeconds: z.number().positive().optional(),
});
/** Options of {@link fineTuneTask}. */
export type FineTuneOptions = z.input<typeof FineTuneOptionsSchema>;

/**
 * Throws a {@link ValidationError} for `compile` without `pack` (the compiled forward pass is the packed
 * one). `prefix` leads the reported path (`'train.'` in a run's options).
 */
export function checkTrainOptions(
  o: { compile: boolean; pack: boolean; batchSize: number; gradAccum: number },
  source: string,
  prefix = '',
): void {
  if (o.batchSize * o.gradAccum > MAX_BATCH_SIZE) {
    throw new ValidationError({
      source,
      issues: [
        {
          path: `${prefix}gradAccum`,
          message: `batchSize × gradAccum is ${o.batchSize * o.gradAccum}: must be at most ${MAX_BATCH_SIZE}`,
        },
      ],
    });
  }
  if (o.compile && !o.pack) {
    throw new ValidationError({
      source,
      issues: [
        {
          path: `${prefix}compile`,
          message: 'needs pack: true (the compiled forward pass is the packed one)',
        },
      ],
    });
  }
}

/** What {@link fineTuneTask} did. */
export interface FineTuneResult {
  /** The task's id (`options.taskId`). */
  readonly taskId: string;
  /** Optimizer steps run. */
  readonly steps: number;
  /** Loss of each step (`null` where it was not finite). */
  readonly losses: readonly (number | null)[];
  /** Tokens trained on (prompt and answer). */
  readonly tokens: number;
  /** Training samples built (after de-duplication and the cap). */
  readonly samples: number;
  /** Samples skipped by Python for being longer than `maxSeqLen`. */
  readonly skippedSamples: number;
  /** Train pairs used, by original index. */
  readonly keptTrain: number[];
  /** Train pairs dropped to fit `maxSeqLen`, by original index. */
  readonly droppedTrain: number[];
  /** Seconds in Python training (reset excluded). */
  readonly trainSeconds: number;
  /** Of `trainSeconds`, what compiling took (`compile`: the first steps of a process); 0 otherwise. */
  readonly compileSeconds: number;
  /** Seconds for the whole call, as seen from Node. */
  readonly seconds: number;
  /** Absolute path of the saved adapter, when `saveAdapter` was given. */
  readonly adapterPath: string | undefined;
}

/** Callbacks of {@link fineTuneTask}. */
export interface FineTuneHooks {
  /** Training progress, every `progressEvery` steps. */
  onStep?: (progress: TrainProgress) => void;
}

/**
 * The training settings {@link trainSamples} takes (a subset of the fine-tune options; `pack` defaults
 * to true, `compile` to false).
 */
export type TrainSettings = Partial<Pick<z.output<typeof FineTuneOptionsSchema>, 'pack' | 'compile'>> &
  Pick<
    z.output<typeof FineTuneOptionsSchema>,
    | 'steps'
    | 'batchSize'
    | 'gradAccum'
    | 'lr'
    | 'warmupRatio'
    | 'weightDecay'
    | 'seed'
    | 'progressEvery'
    | 'timeoutMs'
    | 'signal'
    | 'maxTrainSeconds'
  >;

/** What one training call returned. */
export interface TrainResult {
  /** Optimizer steps run (fewer than asked when `maxTrainSeconds` stopped it). */
  steps: number;
  /** Loss of each step (`null` where it was not finite). */
  losses: (number | null)[];
  /** Tokens trained on (prompt and answer, padding excluded). */
  tokens: number;
  /** Samples that fit `maxSeqLen` and were trained on. */
  samples: number;
  /** Samples skipped for being longer than `maxSeqLen`. */
  skipped: number;
  /** Seconds the call took in Python (tokenising included). */
  seconds: number;
  /** Of `seconds`, the optimizer steps alone (tokens / stepSeconds is the training throughput). */
  stepSeconds: number;
  /** Whether the samples were packed (`pack` asked and the model's attention supports it). */
  packed?: boolean;
  /** Forward rows over all steps (packed rows, or micro-batches). */
  rows?: number;
  /** Whether the forward passes ran compiled (`compile` asked, and the samples were packed). */
  compiled?: boolean;
  /**
   * Of `seconds`, what compiling took: the steps that compiled a graph, beyond a plain step's time (0
   * without `compile`, and once the graphs exist).
   */
  compileSeconds: number;
}

/** Python's `train` result (see python/arc_ttft/entry.py): the same fields, two in snake_case. */
type RawTrainResult = Omit<TrainResult, 'stepSeconds' | 'compileSeconds'> & {
  step_seconds?: number;
  compile_seconds?: number;
};

/** Trains the current adapter on prompt/answer texts (one Python call, no reset). */
export async function trainSamples(
  engine: TaskEngine,
  samples: readonly { prompt: string; answer: string }[],
  s: TrainSettings,
  maxSeqLen: number,
  onStep?: (progress: TrainProgress) => void,
): Promise<TrainResult> {
  const payload = {
    samples,
    steps: s.steps,
    batch_size: s.batchSize,
    grad_accum: s.gradAccum,
    lr: s.lr,
    warmup_ratio: s.warmupRatio,
    weight_decay: s.weightDecay,
    max_seq_len: maxSeqLen,
    seed: s.seed,
    progress_every: onStep ? s.progressEvery : 0,
    max_seconds: s.maxTrainSeconds ?? null,
    pack: s.pack ?? true,
    compile: s.compile ?? false,
  };
  const callOptions = callOptionsOf(s);
  const r = await engine.withTrainProgress(onStep, () =>
    engine.call<RawTrainResult>('train', payload, callOptions),
  );
  // Field by field: Python's other (snake_case) fields stay out of the typed result.
  return {
    steps: r.steps,
    losses: r.losses,
    tokens: r.tokens,
    samples: r.samples,
    skipped: r.skipped,
    seconds: r.seconds,
    stepSeconds: r.step_seconds ?? r.seconds, // an older engine (another install, a Ray image) may not report it
    ...(r.packed !== undefined ? { packed: r.packed } : {}),
    ...(r.rows !== undefined ? { rows: r.rows } : {}),
    ...(r.compiled !== undefined ? { compiled: r.compiled } : {}),
    compileSeconds: r.compile_seconds ?? 0,
  };
}

/**
 * Fits `task` into the token budget (throws {@link TaskTooLongError} when even one train pair is too
 * long), shared by fine-tuning and prediction so both see the same kept pairs.
 */
export async function fitTaskForEngine(
  engine: TaskEngine,
  task: Task,
  o: z.output<typeof TaskTextOptionsSchema>,
): Promise<FitSuccess & { format: z.output<typeof GridFormatNameSchema>; maxSeqLen: number }> {
  const format = o.format ?? engine.format;
  const maxSeqLen = o.maxSeqLen ?? engine.maxSeqLen;
  const callOptions = callOptionsOf(o);
  const fit = await fitTask(task, (texts) => engine.countTokens(texts, callOptions), {
    taskId: o.taskId,
    format,
    style: o.style,
    maxSeqLen,
    strategy: o.dropStrategy,
    seed: o.seed,
  });
  if (!fit.fits) throw fit.error;
  return { ...fit, format, maxSeqLen };
}

/** What {@link trainingTexts} reads of the training options. */
type SampleTextOptions = Pick<
  z.output<typeof FineTuneOptionsSchema>,
  | 'augmentationsPerPair'
  | 'maxSamples'
  | 'seed'
  | 'colourPermutation'
  | 'shuffleTrain'
  | 'transforms'
  | 'style'
  | 'taskId'
>;

/**
 * A task's leave-one-out training samples over its kept pairs, as prompt/answer texts. The options are picked
 * by name: the sample builder refuses options it does not know, and callers hold wider objects.
 * @internal
 */
export function trainingTexts(
  task: Task,
  keptTrain: readonly number[],
  format: z.output<typeof GridFormatNameSchema>,
  o: SampleTextOptions,
): { prompt: string; answer: string }[] {
  const samples = buildTrainingSamples(
    task,
    {
      keptTrain: [...keptTrain],
      augmentationsPerPair: o.augmentationsPerPair,
      maxSamples: o.maxSamples,
      seed: o.seed,
      colourPermutation: o.colourPermutation,
      shuffleTrain: o.shuffleTrain,
      ...(o.transforms !== undefined ? { transforms: o.transforms } : {}),
    },
    o.taskId,
  );
  return samples.map((s) => {
    const t = buildTrainingText(s.train, s.target, { format, style: o.style });
    return { prompt: t.prompt, answer: t.answer };
  });
}

/**
 * Fine-tunes the engine's adapter on one task: resets it in place (no model reload), fits the task
 * into `maxSeqLen` by dropping train pairs, builds leave-one-out samples under invertible
 * augmentations, and trains with the loss on the answer grid only. The adapter stays loaded for
 * {@link predictTask}. Deterministic for a seed on CPU.
 *
 * @throws {@link TaskTooLongError} when the task does not fit even with one train pair.
 * @throws {@link ValidationError} for a bad task or options; {@link BridgeError} / {@link TimeoutError}
 * when Python fails (the engine restarts by itself for the next call).
 */
export async function fineTuneTask(
  engine: TaskEngine,
  task: Task,
  options?: FineTuneOptions,
  hooks: FineTuneHooks = {},
): Promise<FineTuneResult> {
  const started = performance.now();
  const o = parseOptions(FineTuneOptionsSchema, options, 'fineTuneTask');
  checkTrainOptions(o, 'fineTuneTask options');
  validateTask(task, { taskId: o.taskId });
  const callOptions = callOptionsOf(o);
  const fit = await fitTaskForEngine(engine, task, o);

  const texts = trainingTexts(task, fit.kept, fit.format, o);

  if (o.reset) await engine.call('reset_adapter', { seed: null }, callOptions);
  const r = await trainSamples(engine, texts, o, fit.maxSeqLen, hooks.onStep);
  let adapterPath: string | undefined;
  if (o.saveAdapter !== undefined) {
    const saved = await engine.call<{ path: string }>(
      'save_adapter',
      { path: resolve(o.saveAdapter) },
      callOptions,
    );
    adapterPath = saved.path;
  }
  return {
    taskId: o.taskId,
    steps: r.steps,
    losses: r.losses,
    tokens: r.tokens,
    samples: texts.length,
    skippedSamples: r.skipped,
    keptTrain: fit.kept,
    droppedTrain: fit.dropped,
    trainSeconds: r.seconds,
    compileSeconds: r.compileSeconds,
    seconds: (performance.now() - started) / 1000,
    adapterPath,
  };
}
