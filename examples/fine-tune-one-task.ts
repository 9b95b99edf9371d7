// example: needs-engine
/**
 * Single-task test-time fine-tuning end to end on a CPU: make a tiny random model, start the engine
 * once, fine-tune and predict two tasks with the same loaded model (the adapter is reset in place
 * between them), print the losses and the attempts, close the engine. About 30 s on two CPU cores.
 *
 * Run: `npx tsx examples/fine-tune-one-task.ts` (needs the engine's Python: `arc-ttft setup`, or set
 * `PYTHON_BIN` to a Python with torch, transformers and peft).
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
  loadTasks,
  makeTinyModel,
  predictTask,
  sampleDataDir,
  type Task,
} from '../src/index.js';

const show = (grid: Grid | null): string =>
  grid === null ? 'none' : grid.map((row) => row.join('')).join('|');
const losses = (xs: readonly (number | null)[]): string =>
  `loss ${xs[0]?.toFixed(3)} → ${xs.at(-1)?.toFixed(3)} over ${xs.length} steps`;

const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-example-'));
// ARC_TTFT_PYTHON is what the test suite sets; without it the engine finds Python by itself.
const python = process.env.ARC_TTFT_PYTHON ? { pythonBin: process.env.ARC_TTFT_PYTHON } : {};
try {
  // 1. A tiny Qwen2 with random weights and a one-token-per-character tokenizer (a normal HF folder).
  const tiny = await makeTinyModel(join(dir, 'tiny'), { seed: 0, ...python });
  console.log(`tiny model: ${tiny.nParams} parameters`);

  // 2. The engine: one Python process that loads the model once and keeps it for every task.
  const engine = await createEngine({
    model: tiny.path,
    threads: 1,
    // Training the embeddings and output layer too lets the tiny random model learn a task fast.
    lora: { r: 16, alpha: 32, modulesToSave: ['embed_tokens', 'lm_head'] },
    ...python,
  });
  try {
    const m = engine.model;
    console.log(
      `engine: ${m.modelType}, ${m.nTrainable} trainable of ${m.nParams} parameters, ${m.device} ${m.dtype}, ` +
        `format ${engine.format}, maxSeqLen ${engine.maxSeqLen}`,
    );

    // 3. A task whose answer is one fixed grid: the random model cannot guess it, a LoRA learns it.
    const answer: Grid = [
      [1, 2, 1],
      [2, 1, 2],
    ];
    const constant: Task = {
      train: [
        { input: [[3, 0, 5]], output: answer },
        { input: [[7], [8]], output: answer },
        { input: [[4, 4]], output: answer },
        { input: [[9, 6, 1, 2]], output: answer },
      ],
      test: [{ input: [[5, 5, 0]] }],
    };
    // No geometric or colour augmentation: the answer must stay the same grid in every sample.
    const plain = { transforms: ['identity' as const], colourPermutation: 'none' as const };
    const before = await predictTask(engine, constant, { taskId: 'constant', augmentations: 2, ...plain });
    console.log(`constant task before: attempt 1 ${show(before.tests[0]!.attempt1)}`);
    const tuned = await fineTuneTask(engine, constant, {
      taskId: 'constant',
      steps: 100,
      lr: 2e-3,
      ...plain,
    });
    console.log(`constant task: ${tuned.samples} samples, ${losses(tuned.losses)}`);
    const after = await predictTask(engine, constant, { taskId: 'constant', augmentations: 2, ...plain });
    const attempt = after.tests[0]!.attempt1;
    console.log(`constant task after: attempt 1 ${show(attempt)}`);
    console.log(`constant task: attempt 1 is right: ${attempt !== null && gridsEqual(attempt, answer)}`);

    // 4. A real ARC task from the bundled sample, with the default augmentations (rotations, flips,
    // colour permutations). The adapter is reset in place first: no model reload.
    const id = '68b67ca3';
    const { tasks } = await loadTasks(join(sampleDataDir(), 'challenges.json'), {
      solutions: join(sampleDataDir(), 'solutions.json'),
    });
    const task = tasks[id]!;
    const t = await fineTuneTask(engine, task, { taskId: id, steps: 200, lr: 2e-3 });
    console.log(
      `sample task ${id}: ${t.samples} samples from train pairs ${t.keptTrain.join(',')}, ${losses(t.losses)} ` +
        `(${t.tokens} tokens in ${t.trainSeconds.toFixed(1)} s)`,
    );
    const p = await predictTask(engine, task, { taskId: id, keptTrain: t.keptTrain });
    const test = p.tests[0]!;
    const solution = task.test[0]!.output!;
    console.log(
      `sample task ${id}: ${p.sequences} views, ${test.candidates.length} distinct grid(s), ` +
        `${test.failures.length} unparsable${test.failures[0] ? ` (e.g. ${test.failures[0].reason})` : ''}; ` +
        `status ${test.status}`,
    );
    console.log(`sample task ${id}: attempt 1 ${show(test.attempt1)}, attempt 2 ${show(test.attempt2)}`);
    const solved = [test.attempt1, test.attempt2].some((g) => g !== null && gridsEqual(g, solution));
    // A 165k-parameter random model is not expected to solve a real task.
    console.log(`sample task ${id}: solution ${show(solution)}; solved: ${solved}`);
    console.log(`same Python process for both tasks: pid ${engine.pythonPid}, starts ${engine.startCount}`);
  } finally {
    await engine.close();
  }
  console.log('engine closed');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
