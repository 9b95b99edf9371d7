/**
 * Options objects are checked by name: a key no option has (a typo, a wrong casing, an option of another
 * function) is a ValidationError naming the key and the nearest option, never silently a default.
 */
import { describe, expect, it } from 'vitest';
import {
  buildTrainingSamples,
  fitTask,
  formatScoreTable,
  MAX_SEED,
  runSingleTaskTTFT,
  sampleAugmentations,
  scorePredictions,
  type Task,
  ValidationError,
  voteAttempts,
} from '../src/index.js';
import { thrown } from './helpers.js';

const task: Task = {
  train: [
    { input: [[1]], output: [[2]] },
    { input: [[3]], output: [[4]] },
  ],
  test: [{ input: [[5]] }],
};
const chars = (texts: readonly string[]) => texts.map((t) => t.length);

describe('unknown option keys', () => {
  it('are refused with the nearest option named, instead of running at the default', async () => {
    const error = await fitTask(task, chars, { maxSeqlen: 10 } as never).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe('maxSeqlen');
    expect((error as ValidationError).message).toBe(
      'fitTask options: maxSeqlen: unknown key; did you mean "maxSeqLen"?',
    );
    // The same option spelled right is used (10 tokens cannot hold the task).
    expect((await fitTask(task, chars, { maxSeqLen: 10 })).fits).toBe(false);
  });

  it('name every unknown key, with a suggestion only where one is close', () => {
    const e = thrown(() => sampleAugmentations(0, 2, { tranforms: ['identity'], zzz: 1 } as never));
    expect(e.issues).toEqual([
      { path: 'tranforms', message: 'unknown key; did you mean "transforms"?' },
      { path: 'zzz', message: 'unknown key' },
    ]);
  });

  it('apply to every public function that takes options', () => {
    expect(() => buildTrainingSamples(task, { augmentationPerPair: 2 } as never)).toThrow(
      /did you mean "augmentationsPerPair"/,
    );
    expect(() => voteAttempts([], { minvotes: 2 } as never)).toThrow(/did you mean "minVotes"/);
    expect(() => scorePredictions({}, {}, { strict: true } as never)).toThrow(/strict: unknown key/);
    expect(() =>
      formatScoreTable({ score: 0, maxScore: 0, tasks: [] } as never, { colour: true } as never),
    ).toThrow(ValidationError);
  });

  it("are found inside a run's nested option groups, before any model loads", async () => {
    const started = performance.now();
    const error = await runSingleTaskTTFT({ a: task }, { train: { stesp: 3 } } as never).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).message).toMatch(/train\.stesp: unknown key; did you mean "steps"\?/);
    expect(performance.now() - started).toBeLessThan(5000);
  });
});

describe('seeds', () => {
  it('are 32-bit: a wider or negative seed is refused instead of colliding with another', async () => {
    // 2³² + 1 would have run as 1 (every generator keeps the low 32 bits).
    const wide = thrown(() => buildTrainingSamples(task, { seed: 2 ** 32 + 1 }));
    expect(wide.issues).toEqual([
      { path: 'seed', message: `must be a whole number from 0 to ${MAX_SEED} (seeds are 32-bit)` },
    ]);
    expect(() => sampleAugmentations(-1, 2)).toThrow(/seed: must be a whole number from 0 to 4294967295/);
    expect(() => sampleAugmentations(1.5, 2)).toThrow(/seed: must be a whole number from 0 to 4294967295$/);
    const error = await runSingleTaskTTFT({ a: task }, { seed: 2 ** 32 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe('seed');
    // The largest seed is a seed like any other.
    expect(buildTrainingSamples(task, { seed: MAX_SEED }).length).toBeGreaterThan(0);
  });
});
