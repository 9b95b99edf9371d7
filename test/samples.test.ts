import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  ALL_TRANSFORMS,
  applyAugmentation,
  applyAugmentationGrid,
  identityAugmentation,
  invertAugmentationGrid,
  sampleAugmentations,
} from '../src/augment.js';
import { ValidationError } from '../src/errors.js';
import { gridKey } from '../src/grid.js';
import { buildInferenceInputs, buildTrainingSamples, type TrainingSample } from '../src/samples.js';
import type { Example, Task } from '../src/schemas.js';
import { ARC1_TRAINING, HAS_SHARED_DATA } from './helpers.js';

/** Every 20th ARC-AGI-1 training task: a varied subset that keeps the suite fast. */
function loadSubset(): [string, Task][] {
  return readdirSync(ARC1_TRAINING)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .filter((_, i) => i % 20 === 0)
    .map((f) => [f.slice(0, -5), JSON.parse(readFileSync(join(ARC1_TRAINING, f), 'utf8')) as Task]);
}

const pairKey = (p: Example): string => `${gridKey(p.input)}>${gridKey(p.output)}`;
const sampleKey = (s: TrainingSample): string => [...s.train, s.target].map(pairKey).join('/');

/** Checks every invariant a sample set must hold, whatever the options. */
function checkSamples(task: Task, samples: TrainingSample[], kept: number[]): void {
  expect(new Set(samples.map(sampleKey)).size).toBe(samples.length);
  for (const s of samples) {
    expect(kept).toContain(s.targetIndex);
    const order = s.augmentation.trainOrder!;
    expect(order).not.toContain(s.targetIndex);
    expect([...order, s.targetIndex].sort()).toEqual([...kept].sort());
    // The sample is exactly the augmentation applied to the original pairs.
    expect(s.train).toEqual(applyAugmentation(task, s.augmentation).train);
    const original = task.train[s.targetIndex]!;
    expect(s.target.input).toEqual(applyAugmentationGrid(original.input, s.augmentation));
    expect(s.target.output).toEqual(applyAugmentationGrid(original.output, s.augmentation));
    expect(invertAugmentationGrid(s.target.output, s.augmentation)).toEqual(original.output);
  }
}

const toy: Task = {
  train: [
    { input: [[1, 2]], output: [[2, 1]] },
    { input: [[3, 4, 5]], output: [[5, 4, 3]] },
    { input: [[6], [7]], output: [[7], [6]] },
    { input: [[8, 9]], output: [[9, 8]] },
  ],
  test: [{ input: [[1, 0, 2]], output: [[2, 0, 1]] }, { input: [[4]] }],
};

describe('buildTrainingSamples', () => {
  it.runIf(HAS_SHARED_DATA)('builds consistent, de-duplicated leave-one-out samples for real tasks', () => {
    for (const [id, task] of loadSubset()) {
      const samples = buildTrainingSamples(task, { augmentationsPerPair: 16, maxSamples: 40 }, id);
      const kept = task.train.map((_, i) => i);
      expect(samples.length).toBeGreaterThan(0);
      expect(samples.length).toBeLessThanOrEqual(40);
      checkSamples(task, samples, kept);
      if (task.train.length <= 40) expect(new Set(samples.map((s) => s.targetIndex))).toEqual(new Set(kept));
      // The first round is the plain (un-augmented) leave-one-out.
      expect(samples[0]!.augmentation.transform).toBe('identity');
    }
  });

  it('uses the defaults: 32 augmentations per pair, every geometry per target, cap 250', () => {
    const samples = buildTrainingSamples(toy, undefined, 'toy');
    expect(samples).toHaveLength(4 * 32);
    checkSamples(toy, samples, [0, 1, 2, 3]);
    for (let target = 0; target < 4; target++) {
      const mine = samples.filter((s) => s.targetIndex === target);
      expect(mine).toHaveLength(32);
      expect(new Set(mine.map((s) => s.augmentation.transform))).toEqual(new Set(ALL_TRANSFORMS));
      expect(mine.every((s) => s.augmentation.colourMap[0] === 0)).toBe(true);
    }
    const big = buildTrainingSamples(toy, { augmentationsPerPair: 100 }, 'toy');
    expect(big).toHaveLength(250);
  });

  it('is deterministic for a seed and task id, and differs across seeds and task ids', () => {
    const a = buildTrainingSamples(toy, { seed: 3 }, 'toy');
    expect(buildTrainingSamples(toy, { seed: 3 }, 'toy')).toEqual(a);
    expect(buildTrainingSamples(toy, { seed: 4 }, 'toy')).not.toEqual(a);
    expect(buildTrainingSamples(toy, { seed: 3 }, 'other')).not.toEqual(a);
  });

  it('keeps every target under a tight cap (round-robin over targets)', () => {
    const samples = buildTrainingSamples(toy, { maxSamples: 5 });
    expect(samples).toHaveLength(5);
    expect(new Set(samples.map((s) => s.targetIndex))).toEqual(new Set([0, 1, 2, 3]));
    expect(samples.slice(0, 4).map((s) => s.augmentation.transform)).toEqual(Array(4).fill('identity'));
    const one = buildTrainingSamples(toy, { maxSamples: 1 });
    expect(one).toHaveLength(1);
  });

  it('uses only the kept train pairs', () => {
    const samples = buildTrainingSamples(toy, { keptTrain: [3, 1], augmentationsPerPair: 8 });
    expect(samples).toHaveLength(16);
    checkSamples(toy, samples, [3, 1]);
    expect(samples[0]!.augmentation.trainOrder).toEqual([1]);
    expect(() => buildTrainingSamples(toy, { keptTrain: [0, 4] }, 'toy')).toThrow(
      /buildTrainingSamples options: task "toy": keptTrain\[1\]/,
    );
    expect(() => buildTrainingSamples(toy, { keptTrain: [1, 1] })).toThrow(ValidationError);
    expect(() => buildTrainingSamples(toy, { keptTrain: [] })).toThrow(ValidationError);
  });

  it('turns a single-pair task into target-only samples with an empty context', () => {
    const single: Task = { train: [toy.train[1]!], test: toy.test };
    const samples = buildTrainingSamples(single, { augmentationsPerPair: 12 });
    // flipH of [[3,4,5]] → [[5,4,3]] equals a recolouring, so a few of the 12 augmentations may coincide.
    expect(samples.length).toBeGreaterThan(6);
    expect(samples.length).toBeLessThanOrEqual(12);
    for (const s of samples) {
      expect(s.train).toEqual([]);
      expect(s.targetIndex).toBe(0);
    }
    checkSamples(single, samples, [0]);
  });

  it('drops exact duplicates (repeated pairs, symmetric grids)', () => {
    const pair: Example = { input: [[1]], output: [[2]] };
    const repeated: Task = { train: [pair, pair, { ...pair }], test: [{ input: [[1]] }] };
    const samples = buildTrainingSamples(repeated, { colourPermutation: 'none' });
    // 1×1 grids are fixed by every transform and the three pairs are equal: one distinct sample.
    expect(samples).toHaveLength(1);
    const recoloured = buildTrainingSamples(repeated, { augmentationsPerPair: 16 });
    expect(new Set(recoloured.map(sampleKey)).size).toBe(recoloured.length);
    expect(recoloured.length).toBeLessThan(3 * 16);
  });

  it('rejects invalid tasks and options with ValidationError', () => {
    expect(() => buildTrainingSamples({ train: [], test: [{ input: [[0]] }] }, {}, 'bad')).toThrow(
      /task "bad"/,
    );
    expect(() => buildTrainingSamples(toy, { maxSamples: 0 })).toThrow(ValidationError);
    expect(() => buildTrainingSamples(toy, { augmentationsPerPair: 1.5 })).toThrow(ValidationError);
    const ragged = { train: [{ input: [[1, 2], [3]], output: [[1]] }], test: [{ input: [[0]] }] };
    expect(() => buildTrainingSamples(ragged, {}, 'rag')).toThrow(/task "rag": train\[0\]\.input\[1\]/);
  });
});

describe('buildInferenceInputs', () => {
  it('gives one augmented view per augmentation whose prediction inverts to the answer', () => {
    const augs = sampleAugmentations(11, 16, { trainSize: toy.train.length, colourPermutation: 'all' });
    const inputs = buildInferenceInputs(toy, 0, augs);
    expect(inputs).toHaveLength(16);
    inputs.forEach((view, i) => {
      expect(view.testIndex).toBe(0);
      expect(view.augmentation.transform).toBe(augs[i]!.transform);
      const augmented = applyAugmentation(toy, view.augmentation);
      expect(view.train).toEqual(augmented.train);
      expect(view.input).toEqual(augmented.test[0]!.input);
      // A perfect model answers view.output; un-augmenting it gives the true output.
      expect(invertAugmentationGrid(view.output!, view.augmentation)).toEqual(toy.test[0]!.output);
    });
    expect(new Set(inputs.map((v) => v.augmentation.transform))).toEqual(new Set(ALL_TRANSFORMS));
  });

  it('uses the kept pairs for augmentations without a train order and refuses others', () => {
    const [view] = buildInferenceInputs(toy, 1, [identityAugmentation()], { keptTrain: [2, 0] });
    expect(view!.train).toEqual([toy.train[2], toy.train[0]]);
    expect(view!.augmentation.trainOrder).toEqual([2, 0]);
    expect(view!.output).toBeUndefined();
    expect(view!.input).toEqual(toy.test[1]!.input);
    expect(() =>
      buildInferenceInputs(toy, 0, [{ ...identityAugmentation(), trainOrder: [0, 1] }], {
        keptTrain: [0, 2],
      }),
    ).toThrow(/augmentations\[0\]\.trainOrder\[1\]/);
  });

  it('validates the test index and the augmentations', () => {
    expect(() => buildInferenceInputs(toy, 2, [identityAugmentation()], { taskId: 'toy' })).toThrow(
      /task "toy": testIndex/,
    );
    expect(() => buildInferenceInputs(toy, -1, [identityAugmentation()])).toThrow(ValidationError);
    expect(() =>
      buildInferenceInputs(toy, 0, [{ transform: 'rot90', colourMap: [0, 0, 1, 2, 3, 4, 5, 6, 7, 8] }]),
    ).toThrow(/augmentations\[0\]: colourMap\[1\]/);
  });
});
