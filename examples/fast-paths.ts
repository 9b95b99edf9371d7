// example: needs-engine
/**
 * The speed options in one script: an explicit attention implementation, several samples per training
 * step packed into rows, compiled training, and several tasks decoded in one compiled batch. Each gives
 * the results of the plain path (up to float rounding); whether it is faster depends on the device (see
 * docs/performance.md). About 40 s on two CPU cores, most of it compiling.
 *
 * Run: `npx tsx examples/fast-paths.ts` (needs the engine's Python: `arc-ttft setup`).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createEngine,
  fineTuneTask,
  keepAdapter,
  makeTinyModel,
  type PredictTasksItem,
  predictTasks,
} from '../src/index.js';
import { constantTask } from './lib/constant-task.js';

const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-example-'));
const python = process.env.ARC_TTFT_PYTHON ? { pythonBin: process.env.ARC_TTFT_PYTHON } : {};
try {
  const tiny = await makeTinyModel(join(dir, 'tiny'), { seed: 0, ...python });
  // 'sdpa' is what 'auto' picks here; on a GPU with flash-attn, 'flash_attention_2' packs rows of maxSeqLen.
  const engine = await createEngine({ model: tiny.path, attention: 'sdpa', threads: 1, ...python });
  try {
    console.log(`attention: ${engine.model.attention}`);
    const tasks = [1, 3, 5].map((k) => [`const${k}`, constantTask(k)] as const);
    // Keep every slot before the first compiled training: a new slot changes the adapter layout, which would
    // compile the training graphs again (runSingleTaskTTFT does this by itself).
    for (const slot of tasks.keys()) await keepAdapter(engine, slot);

    const plain = { transforms: ['identity' as const], colourPermutation: 'none' as const };
    const items: PredictTasksItem[] = [];
    for (const [slot, [taskId, task]] of tasks.entries()) {
      // 4 samples per step, packed into rows; the forward pass compiled (once per Python process).
      const tuned = await fineTuneTask(engine, task, {
        taskId,
        steps: 40,
        lr: 3e-3,
        batchSize: 4,
        compile: true,
        ...plain,
      });
      const compiling = tuned.compileSeconds > 0 ? 'compiled its graphs' : 'reused the graphs';
      console.log(`${taskId}: ${tuned.steps} steps of 4 samples, ${compiling}`);
      await keepAdapter(engine, slot);
      items.push({ task, taskId, adapter: slot, keptTrain: tuned.keptTrain });
    }

    // The three tasks' views in one batch, each row with its task's adapter: the dynamic loop, then fixed-shape
    // steps compiled once for the batch's shape bucket (CUDA graphs on a GPU).
    const dynamic = await predictTasks(engine, items, { augmentations: 2, ...plain });
    const compiled = await predictTasks(engine, items, { augmentations: 2, decode: 'compiled', ...plain });
    for (const [k, r] of compiled.results.entries()) {
      const same =
        JSON.stringify(r.tests.map((t) => t.candidates.map((c) => [c.grid, c.votes]))) ===
        JSON.stringify(dynamic.results[k]!.tests.map((t) => t.candidates.map((c) => [c.grid, c.votes])));
      console.log(
        `${r.taskId}: ${r.sequences} views decoded compiled; same votes as the dynamic loop: ${same}`,
      );
    }
  } finally {
    await engine.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
