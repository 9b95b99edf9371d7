/**
 * `pack` (fine-tune option): packed training gives the unpacked losses on the real engine, and it is on by default;
 * `compile` runs the packed forward pass compiled, with the same losses.
 * Needs the project venv (npm test sets ARC_TTFT_PYTHON).
 */
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import type { Task } from '../src/schemas.js';
import { FineTuneOptionsSchema, fineTuneTask, trainSamples } from '../src/ttft/fine-tune.js';
import { useTinyEngine } from './helpers.js';

const TASK: Task = {
  train: [
    { input: [[1, 2]], output: [[2, 1]] },
    { input: [[3], [4]], output: [[4], [3]] },
    { input: [[5, 6, 7]], output: [[7, 6, 5]] },
  ],
  test: [{ input: [[8, 9]] }],
};

const fixture = useTinyEngine('pack');

describe('pack', () => {
  it('is on by default and must be a boolean', async () => {
    expect(FineTuneOptionsSchema.parse({}).pack).toBe(true);
    const error = await fineTuneTask(fixture.engine, TASK, { pack: 'yes' as unknown as boolean }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe('pack');
  });

  it('trains to the same losses packed and unpacked, in fewer forward rows', async () => {
    const options = { taskId: 'flip', steps: 4, batchSize: 4, gradAccum: 2, lr: 1e-3, seed: 3 };
    const packed = await fineTuneTask(fixture.engine, TASK, options);
    const plain = await fineTuneTask(fixture.engine, TASK, { ...options, pack: false });
    expect(packed.tokens).toBe(plain.tokens);
    expect(packed.losses).toHaveLength(4);
    for (const [i, loss] of plain.losses.entries()) {
      expect(packed.losses[i]).toBeCloseTo(loss as number, 4);
    }

    // 16, 8 and 8 tokens (prompt + answer + EOS): rows as long as the longest sample hold [16] and [8, 8].
    const samples = [
      { prompt: 'I\n123456789\nO\n', answer: '1' },
      { prompt: 'I\n1\nO\n', answer: '2' },
      { prompt: 'I\n2\nO\n', answer: '3' },
    ];
    const settings = {
      steps: 1,
      batchSize: 3,
      gradAccum: 1,
      lr: 1e-3,
      warmupRatio: 0,
      weightDecay: 0,
      seed: 0,
      progressEvery: 0,
    };
    await fixture.engine.call('reset_adapter', { seed: null });
    const r = await trainSamples(fixture.engine, samples, settings, 256);
    expect(r.packed).toBe(true);
    expect(r.rows).toBe(2);
    await fixture.engine.call('reset_adapter', { seed: null });
    const u = await trainSamples(fixture.engine, samples, { ...settings, pack: false }, 256);
    expect(u.packed).toBe(false);
    expect(u.rows).toBe(3);
    expect(u.losses[0]).toBeCloseTo(r.losses[0] as number, 4);
    expect(r.compiled).toBe(false);
    // The typed fields only (Python's snake_case extras stay out); the steps' time is part of the call's.
    expect(Object.keys(r).sort()).toEqual([
      'compileSeconds',
      'compiled',
      'losses',
      'packed',
      'rows',
      'samples',
      'seconds',
      'skipped',
      'stepSeconds',
      'steps',
      'tokens',
    ]);
    expect(r.stepSeconds).toBeGreaterThan(0);
    expect(r.stepSeconds).toBeLessThanOrEqual(r.seconds);
  });

  it('compiles the packed forward pass on request (compile), with the eager losses', async () => {
    expect(FineTuneOptionsSchema.parse({}).compile).toBe(false);
    const options = { taskId: 'flip', steps: 3, batchSize: 2, gradAccum: 2, lr: 1e-3, seed: 5 };
    const eager = await fineTuneTask(fixture.engine, TASK, options);
    const compiled = await fineTuneTask(fixture.engine, TASK, { ...options, compile: true });
    expect(compiled.tokens).toBe(eager.tokens);
    expect(eager.compileSeconds).toBe(0);
    expect(compiled.compileSeconds).toBeGreaterThan(0); // the first compiled training of this engine
    expect(compiled.compileSeconds).toBeLessThanOrEqual(compiled.trainSeconds);
    for (const [i, loss] of eager.losses.entries()) {
      expect(compiled.losses[i]).toBeCloseTo(loss as number, 4);
    }
    const samples = [{ prompt: 'I\n12\nO\n', answer: '21' }];
    const settings = { ...options, warmupRatio: 0, weightDecay: 0, progressEvery: 0, compile: true };
    const r = await trainSamples(fixture.engine, samples, settings, 64);
    expect(r.compiled).toBe(true);
    const unpacked = await trainSamples(fixture.engine, samples, { ...settings, pack: false }, 64);
    expect(unpacked.compiled).toBe(false); // compile applies to packed rows only
    const error = await fineTuneTask(fixture.engine, TASK, { ...options, compile: true, pack: false }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe('compile');
  }, 180_000);
});
