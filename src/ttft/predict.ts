/**
 * `predictTask`: generate every test output under several augmentations in one batch, undo the
 * augmentations, and vote to two attempts.
 *
 * @module
 */
import { z } from 'zod';
import {
  ColourPermutationSchema,
  invertAugmentationGrid,
  MAX_AUGMENTATIONS,
  sampleAugmentations,
  TransformSchema,
} from '../augment.js';
import { parseOptions, validateTask } from '../data/validate.js';
import { type GridFormatName, getEncoding } from '../format/encodings.js';
import { parseGrid } from '../format/parse.js';
import { answerTextFor, buildInferencePrompt, largestAnswerShape } from '../format/prompt.js';
import { filledGrid } from '../grid.js';
import { deriveSeed } from '../rng.js';
import { buildInferenceInputs, type InferenceInput } from '../samples.js';
import { type Grid, MAX_BATCH_SIZE, MAX_GRID_SIZE, type Task } from '../schemas.js';
import { type RankedCandidate, voteAttempts } from '../vote.js';
import type { TaskEngine } from './engine.js';
import { callOptionsOf, fitTaskForEngine, TaskTextOptionsSchema } from './fine-tune.js';

/**
 * The decoding loop: `dynamic` (the KV cache grows, finished rows leave the batch), `static`
 * (fixed-shape steps over a bucketed static KV cache) or `compiled` (`static`, compiled by
 * torch.compile). All three give the same outputs.
 */
export const DecodeModeSchema = z.enum(['dynamic', 'static', 'compiled']);
/** The decoding loop (see {@link DecodeModeSchema}). */
export type DecodeMode = z.infer<typeof DecodeModeSchema>;

/** Options of {@link predictTask}. */
export const PredictOptionsSchema = TaskTextOptionsSchema.extend({
  /**
   * Augmented views per test input (the first is the un-augmented task); 8 or more covers every
   * rotation/flip.
   * @default 8
   */
  augmentations: z.number().int().positive().max(MAX_AUGMENTATIONS).default(8),
  /** Geometric transforms to draw from; default all 8. */
  transforms: z.array(TransformSchema).min(1).optional(),
  /**
   * Colour permutations of the views: `none`, `keep-background` or `all`.
   * @default 'keep-background'
   */
  colourPermutation: ColourPermutationSchema.default('keep-background'),
  /**
   * Shuffle the context pairs of each view.
   * @default true
   */
  shuffleTrain: z.boolean().default(true),
  /**
   * Sample instead of greedy decoding.
   * @default false
   */
  doSample: z.boolean().default(false),
  /**
   * Sampling temperature (with `doSample`).
   * @default 1
   */
  temperature: z.number().positive().default(1),
  /**
   * Nucleus sampling mass (with `doSample`).
   * @default 1
   */
  topP: z.number().gt(0).max(1).default(1),
  /**
   * Decoding loop: `dynamic` (the KV cache grows, finished rows leave the batch), `static` (fixed-shape
   * steps over a bucketed static KV cache, the same outputs) or `compiled` (`static` with the step
   * compiled by torch.compile: CUDA graphs on a GPU; compiling takes seconds per new shape bucket). A
   * batch of several tasks' adapters (`predictTasks`) takes them too, with per-row adapters, unless the
   * adapters train `modulesToSave`: such a batch decodes `dynamic`.
   * @default 'dynamic'
   */
  decode: DecodeModeSchema.default('dynamic'),
  /** Sequences per generation batch; default: all views of the task in one batch. */
  batchSize: z.number().int().positive().max(MAX_BATCH_SIZE).optional(),
  /** Train pairs to show (e.g. `FineTuneResult.keptTrain`); default: fitted again, the same way. */
  keptTrain: z.array(z.number().int().min(0)).min(1).optional(),
  /**
   * Least votes a grid needs to become an attempt.
   * @default 1
   */
  minVotes: z.number().int().positive().default(1),
});
/** Options of {@link predictTask}. */
export type PredictOptions = z.input<typeof PredictOptionsSchema>;

/** How a test input's prediction went. */
export type TestPredictionStatus = 'ok' | 'no_valid_output';

/** Why one generated text did not become a candidate. */
export interface GenerationFailure {
  /** The augmentation of the view that produced it. */
  readonly view: number;
  /** Parser failure reason, e.g. `ragged` or `unterminated`. */
  readonly reason: string;
  /** The generated text (cut to 200 characters). */
  readonly text: string;
}

/** Prediction for one test input. */
export interface TestPrediction {
  /** Index of the test input in `task.test`. */
  readonly testIndex: number;
  /** Most voted grid; `null` when no view gave a valid grid. */
  readonly attempt1: Grid | null;
  /** Second most voted grid (equal to `attempt1` when there was only one distinct grid). */
  readonly attempt2: Grid | null;
  /** Every distinct grid with its votes and mean log-prob, best first. */
  readonly candidates: readonly RankedCandidate[];
  /** Un-augmented grid of each view, in view order (`null` where the text did not parse). */
  readonly predictions: readonly (Grid | null)[];
  /** Texts that did not parse. */
  readonly failures: readonly GenerationFailure[];
  /** `ok`, or `no_valid_output` when no view gave a valid grid. */
  readonly status: TestPredictionStatus;
}

/** What {@link predictTask} produced. */
export interface PredictResult {
  /** The task's id (`options.taskId`). */
  readonly taskId: string;
  /** One entry per test input, in order. */
  readonly tests: readonly TestPrediction[];
  /** Train pairs shown, by original index. */
  readonly keptTrain: number[];
  /**
   * Sequences generated: test inputs × views, less the views whose prompt repeats another's under greedy
   * decoding (generated once, counted in the vote once per view).
   */
  readonly sequences: number;
  /** Tokens generated. */
  readonly generatedTokens: number;
  /** Seconds in Python generating. */
  readonly generateSeconds: number;
  /** Seconds for the whole call, as seen from Node. */
  readonly seconds: number;
}

/** One output of the engine's `generate` method. */
interface GeneratedOutput {
  text: string;
  n_tokens: number;
  mean_logprob: number | null;
  finish_reason: string;
}

/** What the engine's `generate` method returns. @internal */
export interface GenerateResult {
  outputs: GeneratedOutput[];
  tokens: number;
  seconds: number;
}

/**
 * A task's prompts ready to generate: the views, their prompt texts, the token limit of its answers.
 * @internal
 */
export interface PreparedPrediction {
  readonly taskId: string;
  readonly kept: number[];
  readonly views: readonly (readonly InferenceInput[])[];
  readonly prompts: readonly string[];
  readonly maxNewTokens: number;
  readonly terminator: string;
  readonly format: GridFormatName;
  readonly minVotes: number;
}

/**
 * The side of a square grid that bounds any answer of `task`: the largest grid it shows, or the larger side
 * of {@link largestAnswerShape} (which grows each test input as much as the train pairs grow: an upscaling
 * task answers with a grid larger than any it shows, which a smaller generation limit would cut off), at
 * most 30.
 * @internal
 */
export function answerSide(task: Task): number {
  let side = Math.max(...largestAnswerShape(task));
  for (const pair of task.train) {
    for (const g of [pair.input, pair.output]) side = Math.max(side, g.length, g[0]?.length ?? 0);
  }
  return Math.min(side, MAX_GRID_SIZE);
}

/**
 * Builds the task's views and prompts and the longest answer a view can need (no generation).
 * @internal
 */
export async function preparePrediction(
  engine: TaskEngine,
  task: Task,
  o: z.output<typeof PredictOptionsSchema>,
): Promise<PreparedPrediction> {
  validateTask(task, { taskId: o.taskId });
  const callOptions = callOptionsOf(o);
  const format = o.format ?? engine.format;
  const kept = o.keptTrain ?? (await fitTaskForEngine(engine, task, o)).kept;

  // Views: the same augmentations for every test input of the task, seeded per task.
  const augs = sampleAugmentations(deriveSeed(o.seed, o.taskId, 'predict'), o.augmentations, {
    trainIndices: kept,
    colourPermutation: o.colourPermutation,
    shuffleTrain: o.shuffleTrain,
    ...(o.transforms !== undefined ? { transforms: o.transforms } : {}),
  });
  const views: InferenceInput[][] = task.test.map((_, i) =>
    buildInferenceInputs(task, i, augs, { keptTrain: kept, taskId: o.taskId }),
  );
  const prompts = views.flat().map((v) => buildInferencePrompt(v.train, v.input, { format, style: o.style }));

  // The longest answer a view can need (a square covers either orientation), plus EOS.
  const side = answerSide(task);
  const [answerTokens] = await engine.countTokens(
    [answerTextFor(filledGrid(side, side), { format, style: o.style })],
    callOptions,
  );
  return {
    taskId: o.taskId,
    kept,
    views,
    prompts,
    maxNewTokens: (answerTokens ?? 0) + 1,
    terminator: getEncoding(format).terminator,
    format,
    minVotes: o.minVotes,
  };
}

/**
 * Parses the generated texts of a prepared task (in prompt order), undoes the views' augmentations
 * and votes each test input to two attempts.
 * @internal
 */
export function finishPrediction(
  prep: PreparedPrediction,
  outputs: readonly (GeneratedOutput | undefined)[],
): TestPrediction[] {
  const { format, terminator } = prep;
  const tests: TestPrediction[] = [];
  let k = 0;
  for (const [testIndex, testViews] of prep.views.entries()) {
    const predictions: (Grid | null)[] = [];
    const failures: GenerationFailure[] = [];
    const candidates: { grid: Grid; logProb?: number }[] = [];
    for (const [viewIndex, view] of testViews.entries()) {
      const out = outputs[k++];
      // Python strips the stop string; put the terminator back so the parser sees a complete grid.
      const text = out === undefined ? '' : out.finish_reason === 'stop' ? out.text + terminator : out.text;
      const parsed = parseGrid(text, format);
      if (!parsed.ok) {
        predictions.push(null);
        failures.push({ view: viewIndex, reason: parsed.reason, text: text.slice(0, 200) });
        continue;
      }
      const grid = invertAugmentationGrid(parsed.grid, view.augmentation);
      predictions.push(grid);
      candidates.push(
        out?.mean_logprob !== null && out?.mean_logprob !== undefined
          ? { grid, logProb: out.mean_logprob }
          : { grid },
      );
    }
    const vote = voteAttempts(candidates, { minVotes: prep.minVotes });
    tests.push({
      testIndex,
      attempt1: vote.attempt1,
      attempt2: vote.attempt2,
      candidates: vote.ranked,
      predictions,
      failures,
      status: vote.attempt1 === null ? 'no_valid_output' : 'ok',
    });
  }
  return tests;
}

/**
 * The `generate` payload fields every prediction call shares (decoding settings).
 * @internal
 */
export function decodingPayload(
  o: Pick<
    z.output<typeof PredictOptionsSchema>,
    'doSample' | 'temperature' | 'topP' | 'seed' | 'batchSize' | 'decode'
  >,
): Record<string, unknown> {
  return {
    ...(o.decode !== 'dynamic' ? { static_cache: true, compile: o.decode === 'compiled' } : {}),
    do_sample: o.doSample,
    temperature: o.temperature,
    top_p: o.topP,
    seed: o.seed,
    batch_size: o.batchSize ?? null,
  };
}

/**
 * The prompts of one `generate` call, aligned: each has its token limit and kept-adapter slot (`null`: the
 * engine's adapter).
 * @internal
 */
export interface GenerateRequest {
  readonly prompts: readonly string[];
  readonly maxNewTokens: readonly number[];
  readonly adapters?: readonly (number | null)[] | undefined;
  /** Which task each prompt belongs to: prompts are shared within a task only, so each task's counts are its own. */
  readonly tasks?: readonly number[] | undefined;
  readonly stop: readonly string[];
}

/**
 * Calls the engine's `generate`, sending each distinct prompt (with its limit and adapter) once when decoding
 * is greedy: views that differ only on colours a task does not use, or geometry draws repeated past 8, give the
 * same prompt, and greedy decoding the same text. Outputs come back one per prompt, in order; a repeated
 * prompt shares its first occurrence's output object (count tokens over distinct objects); prompts of
 * different `tasks` are never shared.
 * @internal
 */
export async function generateDistinct(
  engine: TaskEngine,
  request: GenerateRequest,
  o: Parameters<typeof decodingPayload>[0] & Parameters<typeof callOptionsOf>[0],
): Promise<GenerateResult> {
  const { prompts, maxNewTokens, adapters } = request;
  const slot: number[] = [];
  const first = new Map<string, number>();
  const sent: number[] = [];
  for (let i = 0; i < prompts.length; i++) {
    const key = o.doSample
      ? String(i)
      : JSON.stringify([request.tasks?.[i] ?? 0, adapters?.[i] ?? null, maxNewTokens[i], prompts[i]]);
    let at = first.get(key);
    if (at === undefined) {
      at = sent.length;
      first.set(key, at);
      sent.push(i);
    }
    slot.push(at);
  }
  const g = await engine.call<GenerateResult>(
    'generate',
    {
      ...decodingPayload(o),
      prompts: sent.map((i) => prompts[i]),
      max_new_tokens: sent.map((i) => maxNewTokens[i]),
      stop: request.stop,
      ...(adapters?.some((a) => a !== null) ? { adapters: sent.map((i) => adapters[i] ?? null) } : {}),
    },
    callOptionsOf(o),
  );
  return { ...g, outputs: slot.map((at) => g.outputs[at]!) };
}

/**
 * Predicts every test output of `task` with the engine's current adapter (call {@link fineTuneTask}
 * first for single-task TTFT, or not, for the base model): each test input is shown under
 * `augmentations` invertible views, all views of all test inputs are generated in one batch, each
 * parsed grid is mapped back, and the grids are voted to two attempts (frequency, then mean
 * log-prob). Never throws on model output: unparsable texts are counted in `failures`.
 *
 * @throws {@link TaskTooLongError} when the task does not fit even with one train pair.
 */
export async function predictTask(
  engine: TaskEngine,
  task: Task,
  options?: PredictOptions,
): Promise<PredictResult> {
  const started = performance.now();
  const o = parseOptions(PredictOptionsSchema, options, 'predictTask');
  const prep = await preparePrediction(engine, task, o);
  const g = await generateDistinct(
    engine,
    {
      prompts: prep.prompts,
      maxNewTokens: prep.prompts.map(() => prep.maxNewTokens),
      stop: [prep.terminator],
    },
    o,
  );
  return {
    taskId: o.taskId,
    tests: finishPrediction(prep, g.outputs),
    keptTrain: prep.kept,
    sequences: new Set(g.outputs).size,
    generatedTokens: g.tokens,
    generateSeconds: g.seconds,
    seconds: (performance.now() - started) / 1000,
  };
}
