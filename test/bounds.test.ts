/**
 * Counts and sizes that would start unbounded work (a mistyped 1e9) or give a silent wrong answer are typed
 * errors: augmentation counts, train sizes, answer sizes, sparse token counts, solutions that are not grids.
 */
import { describe, expect, it } from 'vitest';
import { sampleAugmentations } from '../src/augment.js';
import { fitTask } from '../src/budget.js';
import { mergeSolutions } from '../src/data/load.js';
import { ValidationError } from '../src/errors.js';
import { maxAnswerChars } from '../src/format/prompt.js';
import { createRng } from '../src/rng.js';
import { buildTrainingSamples } from '../src/samples.js';
import type { Solutions, Task } from '../src/schemas.js';
import { createEngine } from '../src/ttft/engine.js';
import { checkTrainOptions, FineTuneOptionsSchema } from '../src/ttft/fine-tune.js';
import { PredictOptionsSchema } from '../src/ttft/predict.js';

const task: Task = {
  train: [
    { input: [[1]], output: [[2]] },
    { input: [[3]], output: [[4]] },
  ],
  test: [{ input: [[5]] }],
};

describe('bounds on work and sizes', () => {
  it('refuses augmentation counts and train sizes past 10,000 and 1,000 at once', () => {
    const started = performance.now();
    expect(() => sampleAugmentations(0, 1e9)).toThrow(/count must be ≤ 10000/);
    expect(() => sampleAugmentations(0, 2, { trainSize: 2 ** 32 })).toThrow(ValidationError);
    expect(() => buildTrainingSamples(task, { augmentationsPerPair: 1e9 })).toThrow(ValidationError);
    expect(PredictOptionsSchema.safeParse({ augmentations: 1e9 }).success).toBe(false);
    // Batch sizes past the engine's bound fail here, not after a Python round trip.
    expect(PredictOptionsSchema.safeParse({ batchSize: 1e12 }).success).toBe(false);
    expect(FineTuneOptionsSchema.safeParse({ batchSize: 1e12 }).success).toBe(false);
    expect(FineTuneOptionsSchema.safeParse({ gradAccum: 65_537 }).success).toBe(false);
    expect(FineTuneOptionsSchema.safeParse({ gradAccum: 65_536 }).success).toBe(true);
    // The samples of one step, too (a 65,536² list hung Python).
    expect(() =>
      checkTrainOptions(
        FineTuneOptionsSchema.parse({ batchSize: 512, gradAccum: 512 }),
        'fineTuneTask options',
      ),
    ).toThrow(/gradAccum: batchSize × gradAccum is 262144: must be at most 65536/);
    expect(performance.now() - started).toBeLessThan(1000);
    expect(sampleAugmentations(0, 10_000)).toHaveLength(10_000);
  });

  it('checks answer sizes (whole numbers 1–30) instead of looping or answering garbage', () => {
    expect(maxAnswerChars('compact', 30, 30)).toBeGreaterThan(900);
    for (const [rows, cols] of [
      [Number.POSITIVE_INFINITY, 1],
      [1.5, 2],
      [-5, 3],
      [Number.NaN, 1],
      [31, 1],
    ] as const) {
      expect(() => maxAnswerChars('arc24', rows, cols), `${rows}×${cols}`).toThrow(ValidationError);
    }
  });

  it('refuses engine settings that would train nothing or NaN, before Python starts', async () => {
    const started = performance.now();
    await expect(createEngine({ lora: { dropout: 1 } })).rejects.toThrow(
      /lora\.dropout: dropout must be below 1/,
    );
    await expect(createEngine({ dtype: 'float16', lora: { modulesToSave: ['lm_head'] } })).rejects.toThrow(
      /lora\.modulesToSave: with dtype 'float16'/,
    );
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('draws integers only where there is one to draw', () => {
    const rng = createRng(1);
    for (const n of [-5, 0, 1.5, Number.NaN, 2 ** 33])
      expect(() => rng.int(n), String(n)).toThrow(ValidationError);
    const draws = Array.from({ length: 200 }, () => rng.int(3));
    expect(new Set(draws)).toEqual(new Set([0, 1, 2]));
    expect(rng.int(1)).toBe(0);
  });

  it('refuses a token counter that returns holes', async () => {
    const holes = (texts: readonly string[]) => new Array<number>(texts.length);
    await expect(fitTask(task, holes)).rejects.toThrow(/countTokens: \[0\]: a token count must be/);
  });

  it('checks solutions given in memory as a solutions file is checked', () => {
    const bad = { a: ['x'] } as unknown as Solutions;
    expect(() => mergeSolutions({ a: task }, bad)).toThrow(ValidationError);
    expect(() => mergeSolutions({ a: task }, { a: [[[10]]] })).toThrow(/task "a": \["a"\]\[0\]\[0\]\[0\]/);
    expect(mergeSolutions({ a: task }, { a: [[[7]]] }).a!.test[0]!.output).toEqual([[7]]);
  });
});
