// example: needs-engine
/**
 * The three modes of `runSingleTaskTTFT` on the same task set with the same total training steps:
 * `single-task` (a fresh adapter per task, the method), `whole-set` (one adapter trained on every task's
 * samples) and `none` (the base model). The tasks are synthetic — each has one fixed answer grid that
 * only its own train pairs reveal, so the tiny random model can learn them — and one engine (one loaded
 * model) serves all three runs. About 30 s on two CPU cores.
 *
 * Run: `npx tsx examples/compare-modes.ts` (needs the engine's Python: `arc-ttft setup`, or set
 * `PYTHON_BIN` to a Python with torch, transformers and peft).
 *
 * @module
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createEngine,
  createRng,
  type Grid,
  makeTinyModel,
  type RunOptions,
  runSingleTaskTTFT,
  type TaskSet,
} from '../src/index.js';

const TASKS = 4;
const STEPS_PER_TASK = 40;

/** Tasks whose answer is one fixed 2×2 grid, different per task, with random 3×3 inputs. */
function constantTasks(n: number): TaskSet {
  const set: TaskSet = {};
  for (let k = 0; k < n; k++) {
    const rng = createRng(100 + k);
    const grid = (): Grid => Array.from({ length: 3 }, () => Array.from({ length: 3 }, () => rng.int(10)));
    const answer: Grid = [
      [k % 10, (k + 1) % 10],
      [(k + 2) % 10, k % 10],
    ];
    set[`const${k}`] = {
      train: Array.from({ length: 3 }, () => ({ input: grid(), output: answer })),
      test: [{ input: grid(), output: answer }],
    };
  }
  return set;
}

const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-modes-'));
// ARC_TTFT_PYTHON is what the test suite sets; without it the engine finds Python by itself.
const python = process.env.ARC_TTFT_PYTHON ? { pythonBin: process.env.ARC_TTFT_PYTHON } : {};
try {
  const tiny = await makeTinyModel(join(dir, 'tiny'), python);
  // Training the embeddings and output layer too lets a 165k-parameter model learn a task in 40 steps.
  const engine = await createEngine({
    model: tiny.path,
    threads: 1,
    lora: { modulesToSave: ['embed_tokens', 'lm_head'] },
    ...python,
  });
  try {
    const tasks = constantTasks(TASKS);
    const common: RunOptions = {
      // Identity views only: the answers are constant, so colour permutations would change them.
      train: { steps: STEPS_PER_TASK, lr: 2e-3, transforms: ['identity'], colourPermutation: 'none' },
      predict: { augmentations: 2, transforms: ['identity'], colourPermutation: 'none' },
    };
    console.log(
      `${TASKS} tasks; single-task: ${STEPS_PER_TASK} steps per task; whole-set: ${STEPS_PER_TASK * TASKS} steps in all; none: 0 steps`,
    );
    const rows: string[][] = [];
    for (const mode of ['single-task', 'whole-set', 'none'] as const) {
      // Same options for every mode; whole-set's default total is train.steps × tasks, the same budget.
      const result = await runSingleTaskTTFT(tasks, { ...common, mode }, { engine });
      const score = result.score;
      rows.push([
        mode,
        score === undefined ? '-' : score.score.toFixed(3),
        score === undefined ? '-' : `${(100 * score.metrics.accuracy).toFixed(1)}%`,
        result.seconds.toFixed(1),
      ]);
      console.log(`ran ${mode}: ${result.statusCounts.done}/${TASKS} tasks done`);
    }
    const header = ['mode', 'score', 'accuracy', 'seconds'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
    const line = (cells: string[]) =>
      cells
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd();
    console.log(`\n${line(header)}\n${line(widths.map((w) => '-'.repeat(w)))}`);
    for (const row of rows) console.log(line(row));
  } finally {
    await engine.close();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
