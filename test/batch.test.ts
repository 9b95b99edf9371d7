/**
 * `keepAdapter` + `predictTasks`: several tasks, each with its own trained adapter, predicted in one
 * generation batch give what `predictTask` gives for each alone. Needs the project venv (npm test sets
 * ARC_TTFT_PYTHON).
 */
import { describe, expect, it } from 'vitest';
import { runOptionsFromFlags } from '../src/cli/commands/run.js';
import { BridgeError, ValidationError } from '../src/errors.js';
import type { Task } from '../src/schemas.js';
import { keepAdapter, predictTasks } from '../src/ttft/batch.js';
import { fineTuneTask } from '../src/ttft/fine-tune.js';
import { PredictOptionsSchema, type PredictResult, predictTask } from '../src/ttft/predict.js';
import { RunOptionsSchema, runSingleTaskTTFT } from '../src/ttft/run.js';
import { constantTasks, useTinyEngine } from './helpers.js';

const TASKS = constantTasks(3);
const TRAIN = { steps: 30, lr: 5e-3, seed: 1 };

const fixture = useTinyEngine('batch');

/** What a prediction decided, without timings. */
function decided(r: PredictResult) {
  return {
    taskId: r.taskId,
    keptTrain: r.keptTrain,
    sequences: r.sequences,
    generatedTokens: r.generatedTokens,
    tests: r.tests.map((t) => ({
      attempts: [t.attempt1, t.attempt2],
      predictions: t.predictions,
      failures: t.failures,
      votes: t.candidates.map((c) => [c.grid, c.votes]),
    })),
  };
}

describe('predictTasks', () => {
  it('gives each task what predictTask gives it alone, with its own adapter', async () => {
    const ids = ['const0', 'const1', 'const2'];
    const alone: PredictResult[] = [];
    const kept: number[][] = [];
    for (const [k, id] of ids.entries()) {
      const tuned = await fineTuneTask(fixture.engine, TASKS[id]!, { ...TRAIN, taskId: id });
      kept.push(tuned.keptTrain);
      alone.push(
        await predictTask(fixture.engine, TASKS[id]!, {
          taskId: id,
          keptTrain: tuned.keptTrain,
          augmentations: 4 + k,
        }),
      );
      // The last task stays in the live adapter; the others are kept in slots 5 and 6.
      if (k < 2) expect((await keepAdapter(fixture.engine, 5 + k)).slot).toBe(5 + k);
    }
    // Different adapters answer differently, so one adapter for the whole batch would show.
    expect(alone[0]!.tests[0]!.attempt1).not.toEqual(alone[1]!.tests[0]!.attempt1);

    const items = ids.map((id, k) => ({
      task: TASKS[id]!,
      taskId: id,
      keptTrain: kept[k],
      augmentations: 4 + k,
      ...(k < 2 ? { adapter: 5 + k } : {}),
    }));
    const together = await predictTasks(fixture.engine, items);
    expect(together.results.map(decided)).toEqual(alone.map(decided));
    // Fixed-shape steps (eager and compiled) read each row's adapter from stacked copies: the same decisions.
    for (const decode of ['static', 'compiled'] as const) {
      const fixed = await predictTasks(fixture.engine, items, { decode });
      expect(fixed.results.map(decided)).toEqual(alone.map(decided));
    }
    expect(together.sequences).toBe(4 + 5 + 6);
    expect(together.generatedTokens).toBe(alone.reduce((s, r) => s + r.generatedTokens, 0));
    for (const [k, r] of together.results.entries()) {
      const want = alone[k]!.tests[0]!.candidates;
      for (const [j, c] of r.tests[0]!.candidates.entries()) {
        expect(c.meanLogProb).toBeCloseTo(want[j]!.meanLogProb as number, 3);
      }
    }
    const shares = together.results.reduce((s, r) => s + r.generateSeconds, 0);
    expect(shares).toBeCloseTo(together.generateSeconds, 6);
  }, 240_000);

  it('generates a repeated prompt once under greedy decoding and counts it in the vote once per view', async () => {
    // 1×1 grids look the same under all 8 geometries: without colour maps or shuffles, 8 views are 1 prompt.
    const task: Task = {
      train: [
        { input: [[1]], output: [[2]] },
        { input: [[3]], output: [[4]] },
      ],
      test: [{ input: [[5]] }, { input: [[6]] }],
    };
    const views = { colourPermutation: 'none', shuffleTrain: false } as const;
    const one = await predictTask(fixture.engine, task, { taskId: 'dots', ...views, augmentations: 1 });
    const eight = await predictTask(fixture.engine, task, { taskId: 'dots', ...views, augmentations: 8 });
    expect(one.sequences).toBe(2);
    expect(eight.sequences).toBe(2);
    expect(eight.generatedTokens).toBe(one.generatedTokens);
    for (const [i, test] of eight.tests.entries()) {
      // Every view still has its prediction and its vote; one text parses for all views or for none.
      expect(test.predictions).toHaveLength(8);
      expect(new Set(test.predictions.map((p) => p === null)).size).toBe(1);
      expect(test.failures.length === 0).toBe(one.tests[i]!.failures.length === 0);
      expect(test.candidates.reduce((n, c) => n + c.votes, 0)).toBe(8 - test.failures.length);
    }
    // Sampling draws each view afresh: nothing is shared.
    const sampled = await predictTask(fixture.engine, task, {
      taskId: 'dots',
      ...views,
      augmentations: 8,
      doSample: true,
    });
    expect(sampled.sequences).toBe(16);
    // The same task under two ids in one batch: each task's counts are its own, and they add up to the batch's.
    const both = await predictTasks(
      fixture.engine,
      ['d1', 'd2'].map((taskId) => ({ task, taskId })),
      { ...views, augmentations: 8 },
    );
    expect(both.results.map((r) => r.sequences)).toEqual([2, 2]);
    expect(both.sequences).toBe(4);
    expect(both.results.reduce((n, r) => n + r.generatedTokens, 0)).toBe(both.generatedTokens);
  }, 120_000);

  it('rejects bad lists, repeated ids and bad slots with typed errors', async () => {
    const task = TASKS.const0!;
    const empty = await predictTasks(fixture.engine, []).catch((e: unknown) => e);
    expect(empty).toBeInstanceOf(ValidationError);
    expect((empty as ValidationError).path).toBe('items');

    const twice = await predictTasks(fixture.engine, [
      { task, taskId: 'const0' },
      { task, taskId: 'const0' },
    ]).catch((e: unknown) => e);
    expect(twice).toBeInstanceOf(ValidationError);
    expect((twice as ValidationError).path).toBe('items[1].taskId');
    expect((twice as ValidationError).taskId).toBe('const0');

    const badItem = await predictTasks(fixture.engine, [{ task, taskId: 'const0', adapter: 64 }]).catch(
      (e: unknown) => e,
    );
    expect(badItem).toBeInstanceOf(ValidationError);
    expect((badItem as ValidationError).path).toBe('items[0].adapter');

    const badSlot = await keepAdapter(fixture.engine, -1).catch((e: unknown) => e);
    expect(badSlot).toBeInstanceOf(ValidationError);
    expect((badSlot as ValidationError).message).toContain('keepAdapter');

    // A slot nobody kept: Python names the entry.
    const empty40 = await predictTasks(fixture.engine, [{ task, taskId: 'const0', adapter: 40 }]).catch(
      (e: unknown) => e,
    );
    expect(empty40).toBeInstanceOf(BridgeError);
    expect((empty40 as BridgeError).pythonType).toBe('PayloadError');
    expect((empty40 as BridgeError).message).toContain('keep_adapter');
  }, 120_000);
});

describe('run options for batching and decoding', () => {
  it('map from the CLI flags and validate', () => {
    const flags = { tasks: 'x', model: 'embedded', out: 'o', mode: 'single-task' as const, resume: true };
    const o = runOptionsFromFlags({
      ...flags,
      tasksPerBatch: 4,
      decode: 'compiled',
      compileTrain: true,
      trainBatch: 8,
      attention: 'eager',
    });
    expect(o.tasksPerBatch).toBe(4);
    expect(o.predict?.decode).toBe('compiled');
    expect(o.train?.compile).toBe(true);
    expect(o.train?.batchSize).toBe(8);
    expect(o.engine?.attention).toBe('eager');
    expect(runOptionsFromFlags(flags).tasksPerBatch).toBeUndefined();
    expect(runOptionsFromFlags(flags).train?.compile).toBeUndefined();
    expect(RunOptionsSchema.parse({}).tasksPerBatch).toBe(1);
    expect(PredictOptionsSchema.parse({}).decode).toBe('dynamic');
    expect(RunOptionsSchema.safeParse({ tasksPerBatch: 65 }).success).toBe(false);
    expect(PredictOptionsSchema.safeParse({ decode: 'fast' }).success).toBe(false);
  });

  it('reject compiled training without packing before anything starts', async () => {
    const error = await runSingleTaskTTFT('no-such-tasks.json', {
      train: { compile: true, pack: false },
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe('train.compile');
    expect((error as ValidationError).message).toContain('needs pack');
  });
});
