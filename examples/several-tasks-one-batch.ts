// example: needs-engine
/**
 * Several tasks in one generation batch: fine-tune three tasks one after another, keep each adapter in
 * a slot (`keepAdapter`), then predict all three in one batch, each row with its own task's adapter
 * (`predictTasks`), and check that each task gets what `predictTask` gives it alone. About 20 s on two
 * CPU cores.
 *
 * Run: `npx tsx examples/several-tasks-one-batch.ts` (needs the engine's Python: `arc-ttft setup`).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createEngine,
  fineTuneTask,
  type Grid,
  gridsEqual,
  keepAdapter,
  makeTinyModel,
  type PredictResult,
  type PredictTasksItem,
  predictTask,
  predictTasks,
} from '../src/index.js';
import { constantTask } from './lib/constant-task.js';

const show = (grid: Grid | null): string =>
  grid === null ? 'none' : grid.map((row) => row.join('')).join('|');

const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-example-'));
const python = process.env.ARC_TTFT_PYTHON ? { pythonBin: process.env.ARC_TTFT_PYTHON } : {};
try {
  const tiny = await makeTinyModel(join(dir, 'tiny'), { seed: 0, ...python });
  const engine = await createEngine({
    model: tiny.path,
    threads: 1,
    lora: { r: 16, alpha: 32, modulesToSave: ['embed_tokens', 'lm_head'] },
    ...python,
  });
  try {
    const tasks = [1, 3, 5].map((k) => [`const${k}`, constantTask(k)] as const);
    // No geometric or colour augmentation: each answer must stay the same grid in every sample.
    const plain = { transforms: ['identity' as const], colourPermutation: 'none' as const };
    const items: PredictTasksItem[] = [];
    const alone: PredictResult[] = [];
    for (const [slot, [taskId, task]] of tasks.entries()) {
      const tuned = await fineTuneTask(engine, task, { taskId, steps: 100, lr: 2e-3, ...plain });
      // Alone, for the comparison below: what predictTask gives with this adapter live.
      alone.push(
        await predictTask(engine, task, { taskId, keptTrain: tuned.keptTrain, augmentations: 2, ...plain }),
      );
      await keepAdapter(engine, slot); // the next fineTuneTask resets the live adapter; the slot keeps this one
      items.push({ task, taskId, adapter: slot, keptTrain: tuned.keptTrain });
    }

    const batch = await predictTasks(engine, items, { augmentations: 2, ...plain });
    console.log(
      `one batch: ${batch.sequences} sequences of ${items.length} tasks, ${batch.generatedTokens} tokens`,
    );
    for (const [k, r] of batch.results.entries()) {
      const test = r.tests[0]!;
      const solution = tasks[k]![1].test[0]!.output!;
      const same = gridsEqual(test.attempt1 ?? [[-1]], alone[k]!.tests[0]!.attempt1 ?? [[-1]]);
      console.log(
        `${r.taskId}: attempt 1 ${show(test.attempt1)}; right: ${test.attempt1 !== null && gridsEqual(test.attempt1, solution)}; same as alone: ${same}`,
      );
    }
  } finally {
    await engine.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
