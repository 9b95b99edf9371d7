/**
 * Scale-out on Ray: tasks per hour of `runSingleTaskTTFT` on a local Ray cluster with 1 worker and with
 * 2 workers, on the same tasks and settings, in one run (and, for reference, the local one-engine run).
 * CPU, the tiny random model (`makeTinyModel`); each worker reserves one CPU and runs torch on one
 * thread, and so does the local engine. See bench/README.md.
 *
 * Timed: the run itself (`RunResult.seconds`: every task, fine-tuning and prediction), with the engine
 * or pool already started; the start (Python or Ray, workers, model loads) is shown on its own.
 *
 * Run: `npx tsx bench/ray.ts [--tasks 8] [--steps 60] [--augmentations 4] [--data PATH] [--python BIN]
 *       [--no-local] [--json]`
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatTable } from '../src/cli/table.js';
import { loadTasks } from '../src/data/load.js';
import type { TaskSet } from '../src/schemas.js';
import { resolvePythonBin } from '../src/setup/env.js';
import { createEngine, makeTinyModel } from '../src/ttft/engine.js';
import { createRayPool, type RayPool } from '../src/ttft/pool.js';
import { type RunOptions, type RunResult, runSingleTaskTTFT } from '../src/ttft/run.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const ARC1_EVALUATION = resolve(ROOT, '../shared/arc-data/arc-agi-1/evaluation');

const { values: args } = parseArgs({
  options: {
    tasks: { type: 'string', default: '8' },
    steps: { type: 'string', default: '60' },
    augmentations: { type: 'string', default: '4' },
    data: { type: 'string', default: ARC1_EVALUATION },
    python: { type: 'string' },
    'no-local': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write(
    'usage: npx tsx bench/ray.ts [--tasks N] [--steps S] [--augmentations A] [--data PATH] [--python BIN] [--no-local] [--json]\n',
  );
  process.exit(0);
}
const int = (name: string, value: string | undefined): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`error: --${name} must be a positive integer, got ${value}\n`);
    process.exit(2);
  }
  return n;
};
const N = int('tasks', args.tasks);
const STEPS = int('steps', args.steps);
const VIEWS = int('augmentations', args.augmentations);
const PYTHON = args.python ?? (await resolvePythonBin());
const log = (line: string) => process.stderr.write(`${line}\n`);

/** The `n` smallest tasks (by grid cells): varied sizes, short enough for a CPU. */
async function pickTasks(path: string, n: number): Promise<TaskSet> {
  const { tasks } = await loadTasks(path, { mode: 'lenient' });
  const size = (t: TaskSet[string]) =>
    [...t.train.flatMap((p) => [p.input, p.output]), ...t.test.map((x) => x.input)].reduce(
      (a, g) => a + g.length * (g[0]?.length ?? 0),
      0,
    );
  const ids = Object.keys(tasks)
    .sort((a, b) => size(tasks[a]!) - size(tasks[b]!) || a.localeCompare(b))
    .slice(0, n);
  return Object.fromEntries(ids.map((id) => [id, tasks[id]!]));
}

interface Row {
  readonly setup: string;
  readonly workers: number;
  readonly startSeconds: number;
  readonly runSeconds: number;
  readonly tasksPerHour: number;
  /** Seconds Python reports for training and generation, summed over tasks (workers overlap). */
  readonly computeSeconds: number;
  readonly result: RunResult;
}

const dir = mkdtempSync(join(tmpdir(), 'arc-ttft-bench-ray-'));
try {
  const model = (await makeTinyModel(join(dir, 'tiny'), { pythonBin: PYTHON })).path;
  const tasks = await pickTasks(args.data, N);
  const n = Object.keys(tasks).length;
  const engine = {
    model,
    threads: 1,
    pythonBin: PYTHON,
    lora: { modulesToSave: ['embed_tokens', 'lm_head'] },
  };
  const options: RunOptions = {
    engine,
    train: { steps: STEPS, lr: 2e-3 },
    predict: { augmentations: VIEWS },
  };
  const rows: Row[] = [];
  const row = (setup: string, workers: number, startSeconds: number, result: RunResult): Row => ({
    setup,
    workers,
    startSeconds,
    runSeconds: result.seconds,
    tasksPerHour: (n / result.seconds) * 3600,
    computeSeconds: result.records.reduce(
      (a, r) => a + (r.train?.seconds ?? 0) + (r.predict?.seconds ?? 0),
      0,
    ),
    result,
  });

  if (!args['no-local']) {
    log('local engine: starting …');
    const started = performance.now();
    const local = await createEngine(engine);
    try {
      const startSeconds = (performance.now() - started) / 1000;
      log(`local engine: ${n} tasks …`);
      rows.push(
        row('local engine', 1, startSeconds, await runSingleTaskTTFT(tasks, options, { engine: local })),
      );
    } finally {
      await local.close();
    }
  }
  for (const workers of [1, 2]) {
    log(`Ray, ${workers} worker(s): starting …`);
    const started = performance.now();
    let pool: RayPool | undefined;
    try {
      pool = await createRayPool({ address: 'local', workers, localCpus: Math.max(2, workers) }, engine);
      const startSeconds = (performance.now() - started) / 1000;
      log(`Ray, ${workers} worker(s): ${n} tasks …`);
      rows.push(
        row(`Ray, local cluster`, workers, startSeconds, await runSingleTaskTTFT(tasks, options, { pool })),
      );
    } finally {
      await pool?.close();
    }
  }

  const ray1 = rows.find((r) => r.setup.startsWith('Ray') && r.workers === 1)!;
  const ray2 = rows.find((r) => r.setup.startsWith('Ray') && r.workers === 2)!;
  const same = rows.every(
    (r) => JSON.stringify(r.result.submission) === JSON.stringify(ray1.result.submission),
  );
  const summary = {
    tasks: n,
    steps: STEPS,
    augmentations: VIEWS,
    cpus: cpus().length,
    loadAverage1m: loadavg()[0],
    rows: rows.map(({ result, ...r }) => ({ ...r, statusCounts: result.statusCounts })),
    ratio2over1: ray2.tasksPerHour / ray1.tasksPerHour,
    sameSubmission: same,
  };
  if (args.json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } else {
    process.stdout.write(
      `\n${n} tasks (the smallest of ${args.data}), ${STEPS} steps, ${VIEWS} views, tiny model, ` +
        `${cpus().length} CPUs, load average ${loadavg()[0]?.toFixed(1)}\n\n`,
    );
    process.stdout.write(
      `${formatTable(
        ['setup', 'workers', 'start (s)', 'run (s)', 'compute (s)', 'tasks/hour'],
        rows.map((r) => [
          r.setup,
          String(r.workers),
          r.startSeconds.toFixed(1),
          r.runSeconds.toFixed(1),
          r.computeSeconds.toFixed(1),
          r.tasksPerHour.toFixed(0),
        ]),
      )}\n`,
    );
    process.stdout.write(
      '\ncompute = seconds Python reports for train + generate, summed over tasks (they overlap with 2 workers)\n',
    );
    process.stdout.write(
      `\n2 workers / 1 worker: ${summary.ratio2over1.toFixed(2)}× tasks/hour; same submission in every setup: ${same ? 'yes' : 'NO'}\n`,
    );
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
