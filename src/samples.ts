/**
 * Per-task training samples for test-time fine-tuning (leave-one-out under invertible augmentations,
 * as MARC and arc24 build them) and the augmented inputs for inference.
 *
 * @module
 */
import { z } from 'zod';
import {
  type Augmentation,
  AugmentationOptionsSchema,
  applyAugmentationGrid,
  augmentExampleUnchecked,
  checkTrainIndices,
  MAX_AUGMENTATIONS,
  sampleAugmentations,
  validateAugmentation,
} from './augment.js';
import { checkTask, parseOptions } from './data/validate.js';
import { ValidationError } from './errors.js';
import { gridKey } from './grid.js';
import { deriveSeed } from './rng.js';
import { type Example, type Grid, SeedSchema, type Task } from './schemas.js';

const TrainIndicesSchema = z
  .array(
    z
      .number()
      .int({ error: 'a train index must be an integer' })
      .min(0, { error: 'a train index must be ≥ 0' }),
  )
  .min(1, { error: 'keptTrain must keep at least 1 train pair' })
  .refine((xs) => new Set(xs).size === xs.length, { error: 'keptTrain indices must be distinct' });

/** Options of {@link buildTrainingSamples}. */
export const TrainingSampleOptionsSchema = AugmentationOptionsSchema.extend({
  /**
   * Augmentations drawn per leave-one-out target (the first is the identity when `includeIdentity`).
   * 32 cycles the 8 geometries 4 times, so a typical 3–4 pair task gives ~100–130 samples, inside
   * MARC's cap of 250.
   * @default 32
   */
  augmentationsPerPair: z.number().int().positive().max(MAX_AUGMENTATIONS).default(32),
  /**
   * Most samples returned (MARC caps at 250). Samples are taken round-robin over targets, so every
   * kept train pair is a target at least once whenever `maxSamples` ≥ the number of kept pairs.
   * @default 250
   */
  maxSamples: z.number().int().positive().default(250),
  /**
   * Base seed; each task's seed is derived from it and the task id, so tasks get different augmentations.
   * @default 0
   */
  seed: SeedSchema.default(0),
  /** Indices of the train pairs to use (e.g. those kept by the token-budget fit), in prompt order. Default: all. */
  keptTrain: TrainIndicesSchema.optional(),
});
/** Options of {@link buildTrainingSamples}. */
export type TrainingSampleOptions = z.input<typeof TrainingSampleOptionsSchema>;

/**
 * One training sample: an augmented context of train pairs and an augmented target pair whose
 * output the model learns to produce.
 */
export interface TrainingSample {
  /** Augmented context pairs, in the order shown (empty when the task has a single kept train pair). */
  readonly train: Example[];
  /** Augmented target pair (the held-out train pair). */
  readonly target: Example;
  /**
   * The augmentation used; its `trainOrder` lists the original train indices of the context pairs in
   * the order shown, so `applyAugmentation(task, augmentation).train` reproduces `train`.
   */
  readonly augmentation: Augmentation;
  /** Index in the original `task.train` of the pair used as the target. */
  readonly targetIndex: number;
}

function sampleKey(train: readonly Example[], target: Example): string {
  const parts = train.map((p) => `${gridKey(p.input)}>${gridKey(p.output)}`);
  parts.push(`${gridKey(target.input)}>${gridKey(target.output)}`);
  return parts.join('/');
}

/**
 * Builds a task's leave-one-out training samples: each kept train pair becomes the target once per
 * augmentation, with the other kept pairs as context (shuffled when `shuffleTrain`), all augmented
 * alike. A task with a single kept train pair uses that pair as the target with an empty context.
 * Exact duplicates (same context and target grids) are dropped and the result is capped at
 * `maxSamples`, taken round-robin over targets (augmentation round 0 for every target, then round
 * 1, …), so geometries and targets stay balanced under the cap. Deterministic for `seed` and `taskId`.
 */
export function buildTrainingSamples(
  task: Task,
  options?: TrainingSampleOptions,
  taskId?: string,
): TrainingSample[] {
  const where = 'buildTrainingSamples';
  const o = parseOptions(TrainingSampleOptionsSchema, options, where);
  const t = checkTask(task, { taskId });
  const kept = o.keptTrain ?? t.train.map((_, i) => i);
  checkTrainIndices(kept, t.train.length, { taskId, source: `${where} options`, path: 'keptTrain' });

  const taskSeed = taskId === undefined ? deriveSeed(o.seed) : deriveSeed(o.seed, taskId);
  const perTarget = kept.map((targetIndex) => {
    const context = kept.filter((i) => i !== targetIndex);
    return {
      targetIndex,
      augmentations: sampleAugmentations(
        deriveSeed(taskSeed, 'target', targetIndex),
        o.augmentationsPerPair,
        {
          transforms: o.transforms,
          colourPermutation: o.colourPermutation,
          keepBackgroundProbability: o.keepBackgroundProbability,
          shuffleTrain: o.shuffleTrain,
          includeIdentity: o.includeIdentity,
          trainIndices: context,
        },
      ),
    };
  });

  const samples: TrainingSample[] = [];
  const seen = new Set<string>();
  const rounds = Math.max(...perTarget.map((p) => p.augmentations.length));
  for (let round = 0; round < rounds && samples.length < o.maxSamples; round++) {
    for (const { targetIndex, augmentations } of perTarget) {
      if (samples.length >= o.maxSamples) break;
      const augmentation = augmentations[round];
      if (augmentation === undefined) continue;
      const order = augmentation.trainOrder ?? [];
      const train = order.map((i) => augmentExampleUnchecked(t.train[i]!, augmentation));
      const target = augmentExampleUnchecked(t.train[targetIndex]!, augmentation);
      const key = sampleKey(train, target);
      if (seen.has(key)) continue;
      seen.add(key);
      samples.push({ train, target, augmentation, targetIndex });
    }
  }
  return samples;
}

/** Options of {@link buildInferenceInputs}. */
export const InferenceInputOptionsSchema = z.object({
  /**
   * Train pairs to show as context (e.g. those kept by the token-budget fit), used for augmentations
   * without a `trainOrder`; an augmentation's `trainOrder` must stay inside them. Default: all.
   */
  keptTrain: TrainIndicesSchema.optional(),
  /** Task id, for error messages. */
  taskId: z.string().optional(),
});
/** Options of {@link buildInferenceInputs}. */
export type InferenceInputOptions = z.input<typeof InferenceInputOptionsSchema>;

/** One augmented view of a test input, ready to prompt; undo `augmentation` on the predicted grid. */
export interface InferenceInput {
  /** Index of the test input in the original `task.test`. */
  readonly testIndex: number;
  /** Augmented context pairs, in the order shown. */
  readonly train: Example[];
  /** Augmented test input. */
  readonly input: Grid;
  /** Augmented expected output, when the task knows it (for scoring). */
  readonly output?: Grid;
  /**
   * The augmentation to undo with `invertAugmentationGrid`; its `trainOrder` is always set to the
   * original indices of the context pairs shown.
   */
  readonly augmentation: Augmentation;
}

/**
 * For each augmentation, the augmented context and augmented test input of `task.test[testIndex]`:
 * predict on each, map the predictions back with `invertAugmentationGrid`, then vote.
 */
export function buildInferenceInputs(
  task: Task,
  testIndex: number,
  augmentations: readonly Augmentation[],
  options?: InferenceInputOptions,
): InferenceInput[] {
  const where = 'buildInferenceInputs';
  const o = parseOptions(InferenceInputOptionsSchema, options, where);
  const t = checkTask(task, { taskId: o.taskId });
  if (!Number.isInteger(testIndex) || testIndex < 0 || testIndex >= t.test.length) {
    throw new ValidationError({
      taskId: o.taskId,
      source: where,
      issues: [
        {
          path: 'testIndex',
          message: `testIndex must be an integer in [0, ${t.test.length - 1}], got ${String(testIndex)}`,
        },
      ],
    });
  }
  const kept = o.keptTrain ?? t.train.map((_, i) => i);
  checkTrainIndices(kept, t.train.length, {
    taskId: o.taskId,
    source: `${where} options`,
    path: 'keptTrain',
  });
  const keptSet = new Set(kept);
  const pair = t.test[testIndex]!;
  if (!Array.isArray(augmentations)) {
    throw new ValidationError({
      taskId: o.taskId,
      source: where,
      issues: [
        { path: 'augmentations', message: 'augmentations must be an array (see sampleAugmentations)' },
      ],
    });
  }

  return augmentations.map((raw, a) => {
    const aug = validateAugmentation(raw, `${where} augmentations[${a}]`);
    const order = aug.trainOrder ?? kept;
    const outside = order.findIndex((i) => !keptSet.has(i));
    if (outside >= 0) {
      throw new ValidationError({
        taskId: o.taskId,
        source: where,
        issues: [
          {
            path: `augmentations[${a}].trainOrder[${outside}]`,
            message: `train index ${order[outside]} is not among the kept train pairs (${kept.join(', ')})`,
          },
        ],
      });
    }
    const augmentation: Augmentation = { ...aug, trainOrder: order.slice() };
    const base = {
      testIndex,
      train: order.map((i) => augmentExampleUnchecked(t.train[i]!, aug)),
      input: applyAugmentationGrid(pair.input, aug),
      augmentation,
    };
    return pair.output === undefined ? base : { ...base, output: applyAugmentationGrid(pair.output, aug) };
  });
}
