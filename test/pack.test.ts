/**
 * `pack` (fine-tune option): packed training gives the unpacked losses on the real engine, and it is on by default.
 * Needs the project venv (npm test sets ARC_TTFT_PYTHON).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import type { Task } from '../src/schemas.js';
import { createEngine, type Engine, makeTinyModel } from '../src/ttft/engine.js';
import { FineTuneOptionsSchema, fineTuneTask, trainSamples } from '../src/ttft/fine-tune.js';

const PYTHON = process.env.ARC_TTFT_PYTHON;
const py = PYTHON !== undefined ? { pythonBin: PYTHON } : {};

const TASK: Task = {
  train: [
    { input: [[1, 2]], output: [[2, 1]] },
    { input: [[3], [4]], output: [[4], [3]] },
    { input: [[5, 6, 7]], output: [[7, 6, 5]] },
  ],
  test: [{ input: [[8, 9]] }],
};

let dir: string;
let engine: Engine;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'arc-ttft-pack-'));
  await makeTinyModel(join(dir, 'tiny'), { seed: 0, ...py });
  engine = await createEngine({ model: join(dir, 'tiny'), threads: 1, ...py });
}, 180_000);

afterAll(async () => {
  await engine?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('pack', () => {
  it('is on by default and must be a boolean', async () => {
    expect(FineTuneOptionsSchema.parse({}).pack).toBe(true);
    const error = await fineTuneTask(engine, TASK, { pack: 'yes' as unknown as boolean }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe('pack');
  });

  it('trains to the same losses packed and unpacked, in fewer forward rows', async () => {
    const options = { taskId: 'flip', steps: 4, batchSize: 4, gradAccum: 2, lr: 1e-3, seed: 3 };
    const packed = await fineTuneTask(engine, TASK, options);
    const plain = await fineTuneTask(engine, TASK, { ...options, pack: false });
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
    await engine.call('reset_adapter', { seed: null });
    const r = await trainSamples(engine, samples, settings, 256);
    expect(r.packed).toBe(true);
    expect(r.rows).toBe(2);
    await engine.call('reset_adapter', { seed: null });
    const u = await trainSamples(engine, samples, { ...settings, pack: false }, 256);
    expect(u.packed).toBe(false);
    expect(u.rows).toBe(3);
    expect(u.losses[0]).toBeCloseTo(r.losses[0] as number, 4);
  });
});
