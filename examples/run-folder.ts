// example: needs-engine
/**
 * `runSingleTaskTTFT` on a folder of `<id>.json` task files: split the bundled sample tasks into a temp
 * folder, make a tiny random model, run single-task TTFT on the folder with a few steps, print the
 * progress events as they come and the result summary, then list the output folder. Under a minute on
 * two CPU cores (the tiny model is random, so the score is noise: this shows the machinery).
 *
 * Run: `npx tsx examples/run-folder.ts` (needs the engine's Python: `arc-ttft setup`, or set
 * `PYTHON_BIN` to a Python with torch, transformers and peft).
 *
 * @module
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadTasks,
  makeTinyModel,
  type RunEvent,
  runSingleTaskTTFT,
  sampleDataDir,
  splitTaskSet,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-run-folder-'));
// ARC_TTFT_PYTHON is what the test suite sets; without it the engine finds Python by itself.
const python = process.env.ARC_TTFT_PYTHON ? { pythonBin: process.env.ARC_TTFT_PYTHON } : {};

/** One line per event; a real program would draw progress bars from the same events. */
function onEvent(event: RunEvent): void {
  switch (event.type) {
    case 'run_started':
      console.log(
        `run_started: ${event.mode}, ${event.total} tasks, ${event.resumed} resumed, ${event.invalid} invalid; ` +
          `model ${event.model.modelType} on ${event.model.device}`,
      );
      break;
    case 'task_started':
      console.log(
        `task_started: ${event.taskId} (${event.remaining} to go), ${event.settings.steps} steps, ${event.settings.augmentations} views`,
      );
      break;
    case 'train_step':
      console.log(
        `  train_step: ${event.taskId} step ${event.step}/${event.steps} loss ${event.loss?.toFixed(3)}`,
      );
      break;
    case 'task_finished': {
      const r = event.record;
      const fallback = r.fallback.length > 0 ? `, fallback for test ${r.fallback.join(',')}` : '';
      console.log(
        `task_finished: ${event.done}/${event.total} ${r.taskId} ${r.status}, ${r.train?.steps ?? 0} steps${fallback}`,
      );
      break;
    }
    case 'run_finished':
      console.log(`run_finished: ${event.result.records.length} records`);
      break;
    case 'whole_set_started':
      break;
  }
}

try {
  // 1. A folder of <id>.json files, as `arc-ttft split` writes it (test outputs left out, as on Kaggle).
  const { tasks } = await loadTasks(join(sampleDataDir(), 'challenges.json'));
  const folder = join(dir, 'tasks');
  const files = await splitTaskSet(tasks, folder);
  console.log(`split ${files.length} tasks into ${readdirSync(folder).length} files`);

  // 2. A tiny random Qwen2 (165k parameters, character tokenizer): fast on a CPU, predicts noise.
  const tiny = await makeTinyModel(join(dir, 'tiny'), python);

  // 3. The run. The solutions file gives metrics; `out` gets the submission, journal, metrics and report.
  const out = join(dir, 'out');
  const result = await runSingleTaskTTFT(
    folder,
    {
      solutions: join(sampleDataDir(), 'solutions.json'),
      out,
      // Three of the six tasks keep the example under a minute on two cores.
      only: ['4cd1b7b2', '5783df64', '68b67ca3'],
      engine: { model: tiny.path, threads: 1, ...python },
      train: { steps: 4, progressEvery: 2 },
      predict: { augmentations: 2 },
    },
    { onEvent },
  );

  // 4. The summary.
  const counts = Object.entries(result.statusCounts)
    .filter(([, n]) => n > 0)
    .map(([status, n]) => `${n} ${status}`)
    .join(', ');
  console.log(`statuses: ${counts}`);
  const entries = Object.values(result.submission).flat();
  const answered = entries.filter((a) => a.attempt_1.length > 0 && a.attempt_2.length > 0).length;
  console.log(
    `submission: ${Object.keys(result.submission).length} tasks, ${answered}/${entries.length} test inputs with two attempts`,
  );
  // Noise from a random model (a fallback copy of the test input can score on an identity-like task).
  console.log(`Kaggle score: ${result.score?.score.toFixed(4)}`);
  console.log(`aborted: ${result.aborted}`);
  console.log(`out: ${readdirSync(out).sort().join(', ')}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
