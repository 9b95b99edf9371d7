/**
 * Several tasks in one generation batch: `keepAdapter` holds a trained adapter in a slot, and
 * `predictTasks` generates the views of several tasks, each with its own adapter, in one batch.
 *
 * One task's views (8 by default) fill a GPU poorly; the tasks of a group together fill it better.
 * The engine trains one adapter at a time, so a group is trained task after task, each kept in a
 * slot, then predicted together.
 *
 * @module
 */
import { z } from 'zod';
import { MAX_AUGMENTATIONS } from '../augment.js';
import { parseOptions, parseWith } from '../data/validate.js';
import { ValidationError } from '../errors.js';
import { type Task, TaskIdSchema, TimeoutMsSchema } from '../schemas.js';
import type { TaskEngine } from './engine.js';
import { callOptionsOf } from './fine-tune.js';
import {
  finishPrediction,
  generateDistinct,
  PredictOptionsSchema,
  type PredictResult,
  type PreparedPrediction,
  preparePrediction,
} from './predict.js';

/** Adapter slots an engine can keep (each holds one adapter's weights in memory). */
export const MAX_ADAPTER_SLOTS = 64;

/** A kept-adapter slot number, 0 to {@link MAX_ADAPTER_SLOTS} − 1. */
export const AdapterSlotSchema = z
  .number()
  .int()
  .min(0)
  .max(MAX_ADAPTER_SLOTS - 1);

/** Options of {@link keepAdapter}. */
export const KeepAdapterOptionsSchema = z.strictObject({
  /** Time limit of the call (ms); default: the engine's `callTimeoutMs`. */
  timeoutMs: TimeoutMsSchema.optional(),
  /** Cancels the call. */
  signal: z.custom<AbortSignal>((value) => value instanceof AbortSignal, 'must be an AbortSignal').optional(),
});
/** Options of {@link keepAdapter}. */
export type KeepAdapterOptions = z.input<typeof KeepAdapterOptionsSchema>;

/** What {@link keepAdapter} did. */
export interface KeepAdapterResult {
  /** The slot written. */
  readonly slot: number;
  /** Slots the engine now holds. */
  readonly kept: number;
  /** Seconds in Python. */
  readonly seconds: number;
}

/**
 * Copies the engine's current adapter (e.g. just trained by {@link fineTuneTask}) into `slot`, for a
 * later {@link predictTasks}. Training, resets and saves go on in the current adapter and leave
 * the slot as it was; keeping a slot again overwrites it in place. Slots live as long as the loaded
 * model (a Python restart empties them).
 */
export async function keepAdapter(
  engine: TaskEngine,
  slot: number,
  options?: KeepAdapterOptions,
): Promise<KeepAdapterResult> {
  const o = parseOptions(KeepAdapterOptionsSchema, options, 'keepAdapter');
  const s = parseWith(AdapterSlotSchema, slot, { source: 'keepAdapter', pathPrefix: 'slot' });
  return engine.call<KeepAdapterResult>('keep_adapter', { slot: s }, callOptionsOf(o));
}

/** One task of a {@link predictTasks} batch. */
export const PredictTasksItemSchema = z.strictObject({
  /** The task. */
  task: z.custom<Task>((value) => typeof value === 'object' && value !== null, 'must be a task object'),
  /** The task's id, for results, errors and seeds. */
  taskId: TaskIdSchema,
  /** Kept slot whose adapter predicts this task; omitted: the engine's current adapter. */
  adapter: AdapterSlotSchema.optional(),
  /** Train pairs to show (e.g. `FineTuneResult.keptTrain`); default: fitted again. */
  keptTrain: z.array(z.number().int().min(0)).min(1).optional(),
  /** Views per test input for this task; default: the options' `augmentations`. */
  augmentations: z.number().int().positive().max(MAX_AUGMENTATIONS).optional(),
});
/** One task of a {@link predictTasks} batch. */
export type PredictTasksItem = z.input<typeof PredictTasksItemSchema>;

/** Options of {@link predictTasks}: those of {@link predictTask} but the per-task ones. */
export const PredictTasksOptionsSchema = PredictOptionsSchema.omit({ taskId: true, keptTrain: true });
/** Options of {@link predictTasks}. */
export type PredictTasksOptions = z.input<typeof PredictTasksOptionsSchema>;

/** What {@link predictTasks} produced. */
export interface PredictTasksResult {
  /** One result per item, in order, as {@link predictTask} gives it; `generateSeconds` is the task's share of the batch, by generated tokens. */
  readonly results: readonly PredictResult[];
  /** Sequences generated, all tasks. */
  readonly sequences: number;
  /** Tokens generated, all tasks. */
  readonly generatedTokens: number;
  /** Seconds in Python generating the batch. */
  readonly generateSeconds: number;
  /** Seconds for the whole call, as seen from Node. */
  readonly seconds: number;
}

/**
 * Predicts several tasks in one generation batch, each with its own adapter (a slot from
 * {@link keepAdapter}, or the current one): every task's views are built as {@link predictTask}
 * builds them, all are decoded together (each row stops where it would alone: its task's token
 * limit, its grid's end), and each task is voted on its own. Gives what {@link predictTask} gives
 * per task, up to float rounding.
 *
 * @throws {@link ValidationError} for an empty list, a bad item or a repeated task id.
 * @throws {@link TaskTooLongError} when a task does not fit even with one train pair.
 */
export async function predictTasks(
  engine: TaskEngine,
  items: readonly PredictTasksItem[],
  options?: PredictTasksOptions,
): Promise<PredictTasksResult> {
  const started = performance.now();
  const o = parseOptions(PredictTasksOptionsSchema, options, 'predictTasks');
  if (!Array.isArray(items) || items.length === 0) {
    throw new ValidationError({
      source: 'predictTasks',
      issues: [{ path: 'items', message: 'must be a non-empty array of tasks' }],
    });
  }
  const parsed = items.map((item, i) =>
    parseWith(PredictTasksItemSchema, item, { source: 'predictTasks', pathPrefix: `items[${i}]` }),
  );
  const seen = new Set<string>();
  for (const [i, item] of parsed.entries()) {
    if (seen.has(item.taskId)) {
      throw new ValidationError({
        source: 'predictTasks',
        taskId: item.taskId,
        issues: [{ path: `items[${i}].taskId`, message: 'the task is listed twice' }],
      });
    }
    seen.add(item.taskId);
  }

  const preps: PreparedPrediction[] = [];
  for (const item of parsed) {
    preps.push(
      await preparePrediction(engine, item.task, {
        ...o,
        taskId: item.taskId,
        keptTrain: item.keptTrain,
        augmentations: item.augmentations ?? o.augmentations,
      }),
    );
  }
  const g = await generateDistinct(
    engine,
    {
      prompts: preps.flatMap((p) => p.prompts),
      maxNewTokens: preps.flatMap((p) => p.prompts.map(() => p.maxNewTokens)),
      adapters: parsed.flatMap((item, k) => preps[k]!.prompts.map(() => item.adapter ?? null)),
      tasks: preps.flatMap((p, k) => p.prompts.map(() => k)),
      stop: [...new Set(preps.map((p) => p.terminator))],
    },
    o,
  );

  const seconds = (performance.now() - started) / 1000;
  const results: PredictResult[] = [];
  let offset = 0;
  for (const prep of preps) {
    const outputs = g.outputs.slice(offset, offset + prep.prompts.length);
    offset += prep.prompts.length;
    // A repeated prompt shares its output object: its tokens were generated once.
    const generated = new Set(outputs);
    const tokens = [...generated].reduce((sum, out) => sum + out.n_tokens, 0);
    results.push({
      taskId: prep.taskId,
      tests: finishPrediction(prep, outputs),
      keptTrain: prep.kept,
      sequences: generated.size,
      generatedTokens: tokens,
      generateSeconds: g.tokens > 0 ? (g.seconds * tokens) / g.tokens : g.seconds / preps.length,
      seconds,
    });
  }
  return {
    results,
    sequences: new Set(g.outputs).size,
    generatedTokens: g.tokens,
    generateSeconds: g.seconds,
    seconds,
  };
}
