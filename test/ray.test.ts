/**
 * Runs on Ray (CPU, tiny model, one local cluster of 2 workers for the whole file): the same
 * submission and records as a local run, a worker killed mid-run costs nothing but a retry, and a
 * Python without Ray fails with a SetupError saying how to install it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOptionsFromFlags } from '../src/cli/commands/run.js';
import { checkSubmission } from '../src/data/split.js';
import { SetupError } from '../src/errors.js';
import { createRng } from '../src/rng.js';
import type { Grid, TaskSet } from '../src/schemas.js';
import { resolvePythonBin } from '../src/setup/env.js';
import { makeTinyModel } from '../src/ttft/engine.js';
import { createRayPool, type RayPool } from '../src/ttft/pool.js';
import { type RunEvent, type RunOptions, type RunResult, runSingleTaskTTFT } from '../src/ttft/run.js';
import { constantTasks, readJournal, roundedRecord, stableRecord } from './helpers.js';

const PYTHON = process.env.ARC_TTFT_PYTHON ?? (await resolvePythonBin());
const HAS_RAY = spawnSync(PYTHON, ['-c', 'import ray'], { stdio: 'ignore' }).status === 0;
const TASKS = 6;

let dir: string;
let tasksFile: string;
let model: string;
let pool: RayPool | undefined;
let reference: RunResult;

function engineOptions() {
  return { model, threads: 1, pythonBin: PYTHON, lora: { modulesToSave: ['embed_tokens', 'lm_head'] } };
}

function options(out: string): RunOptions {
  return {
    out,
    engine: engineOptions(),
    train: { steps: 30, lr: 2e-3, transforms: ['identity'], colourPermutation: 'none' },
    predict: { augmentations: 2, transforms: ['identity'], colourPermutation: 'none' },
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'arc-ttft-ray-'));
  model = (await makeTinyModel(join(dir, 'tiny'), { pythonBin: PYTHON })).path;
  tasksFile = join(dir, 'const.json');
  writeFileSync(tasksFile, JSON.stringify(constantTasks(TASKS)));
  reference = await runSingleTaskTTFT(tasksFile, options(join(dir, 'local')));
  if (HAS_RAY) {
    pool = await createRayPool({ address: 'local', workers: 2, localCpus: 2 }, engineOptions());
  }
}, 300_000);

afterAll(async () => {
  await pool?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!HAS_RAY)('runSingleTaskTTFT on a Ray pool', () => {
  it('gives the same submission and records as the local run, on both workers', async () => {
    const p = pool!;
    expect(p.engines).toHaveLength(2);
    expect(p.info.startedLocal).toBe(true);
    const events: RunEvent[] = [];
    const out = join(dir, 'ray');
    const result = await runSingleTaskTTFT(tasksFile, options(out), {
      pool: p,
      onEvent: (e) => events.push(e),
    });
    checkSubmission(result.submission, constantTasks(TASKS));
    expect(result.submission).toEqual(reference.submission);
    expect(result.records.map(stableRecord)).toEqual(reference.records.map(stableRecord));
    expect(JSON.parse(readFileSync(join(out, 'submission.json'), 'utf8'))).toEqual(reference.submission);
    expect(readJournal(out)).toHaveLength(TASKS);
    const workers = new Set(events.flatMap((e) => (e.type === 'task_started' ? [e.worker] : [])));
    expect(workers).toEqual(new Set([0, 1]));
    expect(events.some((e) => e.type === 'train_step')).toBe(true);
    expect(events.at(-1)?.type).toBe('run_finished');
  }, 300_000);

  it('predicts groups of tasks (tasksPerBatch) on each worker with the local result', async () => {
    const result = await runSingleTaskTTFT(
      tasksFile,
      { ...options(join(dir, 'ray-groups')), tasksPerBatch: 2 },
      {
        pool: pool!,
      },
    );
    expect(result.submission).toEqual(reference.submission);
    expect(result.records.map(roundedRecord)).toEqual(reference.records.map(roundedRecord));
  }, 300_000);

  it('survives a worker killed mid-task: the task is retried, nothing else is lost', async () => {
    const p = pool!;
    const events: RunEvent[] = [];
    const out = join(dir, 'killed');
    let killed: { taskId: string; worker: number } | undefined;
    const result = await runSingleTaskTTFT(tasksFile, options(out), {
      pool: p,
      onEvent: (e) => {
        events.push(e);
        // Kill the worker that takes the third task, as soon as it starts it.
        if (e.type === 'task_started' && e.index === 2 && e.worker !== undefined) {
          killed = { taskId: e.taskId, worker: e.worker };
          void p.killWorker(e.worker);
        }
      },
    });
    expect(killed).toBeDefined();
    const retried = events.filter((e) => e.type === 'task_retried');
    expect(retried).toEqual([
      expect.objectContaining({ taskId: killed!.taskId, worker: killed!.worker, retry: 1 }),
    ]);
    expect(result.statusCounts.done).toBe(TASKS);
    expect(result.submission).toEqual(reference.submission);
    expect(result.records.map(stableRecord)).toEqual(reference.records.map(stableRecord));
    // One journal line per task: the lost attempt wrote nothing.
    const lines = readJournal(out);
    expect(lines.map((r) => r.taskId).sort()).toEqual(Object.keys(constantTasks(TASKS)).sort());
    expect(p.engines[killed!.worker]!.restarts).toBeGreaterThanOrEqual(1);
  }, 300_000);
});

describe.skipIf(!HAS_RAY)('a task past its time limit on a Ray pool', () => {
  it('is recorded as timed out; its worker restarts and the next run matches the local one', async () => {
    const p = pool!;
    const slow = await runSingleTaskTTFT(
      tasksFile,
      { ...options(join(dir, 'slow')), taskTimeoutMs: 1500, train: { steps: 100_000 }, only: ['const0'] },
      { pool: p },
    );
    expect(slow.records[0]!.status).toBe('timed_out');
    expect(slow.records[0]!.error?.type).toBe('TimeoutError');
    const next = await runSingleTaskTTFT(
      tasksFile,
      { ...options(join(dir, 'after-slow')), only: ['const0', 'const1'] },
      { pool: p },
    );
    expect(next.records.map(stableRecord)).toEqual(reference.records.slice(0, 2).map(stableRecord));
  }, 300_000);
});

describe.skipIf(!HAS_RAY)('aborting a run on a Ray pool', () => {
  it('keeps the finished tasks, and a resume on the same pool ends with the local result', async () => {
    const p = pool!;
    const out = join(dir, 'aborted');
    const controller = new AbortController();
    const first = await runSingleTaskTTFT(tasksFile, options(out), {
      pool: p,
      signal: controller.signal,
      onEvent: (e) => {
        if (e.type === 'task_finished' && e.done === 2) controller.abort();
      },
    });
    expect(first.aborted).toBe(true);
    const partial = readJournal(out).length;
    expect(partial).toBeGreaterThanOrEqual(2);
    expect(partial).toBeLessThan(TASKS);
    const events: RunEvent[] = [];
    const resumed = await runSingleTaskTTFT(tasksFile, options(out), {
      pool: p,
      onEvent: (e) => events.push(e),
    });
    expect(events[0]).toMatchObject({ type: 'run_started', resumed: partial });
    expect(resumed.submission).toEqual(reference.submission);
    expect(resumed.records.map(stableRecord)).toEqual(reference.records.map(stableRecord));
    expect(readJournal(out)).toHaveLength(TASKS);
  }, 300_000);
});

describe.skipIf(!HAS_RAY)('joining an existing Ray cluster', () => {
  it('runs on a cluster started with `ray start --head` and gives the local result', async () => {
    // One Ray cluster at a time on this 2-core machine: the file's private cluster goes first.
    await pool?.close();
    pool = undefined;
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const rayCli = join(dirname(PYTHON), 'ray');
    const head = spawn(
      rayCli,
      ['start', '--head', '--block', `--port=${port}`, '--num-cpus=1', '--include-dashboard=false'],
      {
        detached: true, // its own process group: one kill stops the head and what it started
        stdio: 'ignore',
        env: { ...process.env, RAY_USAGE_STATS_ENABLED: '0' },
      },
    );
    try {
      // The head is up when `ray status` reaches it.
      const address = `127.0.0.1:${port}`;
      const deadline = Date.now() + 120_000;
      while (spawnSync(rayCli, ['status', `--address=${address}`], { stdio: 'ignore' }).status !== 0) {
        if (Date.now() > deadline) throw new Error(`ray start --head did not come up at ${address}`);
        await new Promise((r) => setTimeout(r, 1000));
      }
      const joined = await createRayPool({ address, workers: 1 }, engineOptions());
      try {
        expect(joined.info.startedLocal).toBe(false);
        expect(joined.info.address).toContain(String(port));
        const two = join(dir, 'two.json');
        writeFileSync(two, JSON.stringify(constantTasks(2)));
        const result = await runSingleTaskTTFT(two, options(join(dir, 'cluster')), { pool: joined });
        expect(result.records.map(stableRecord)).toEqual(
          reference.records.filter((r) => r.taskId in constantTasks(2)).map(stableRecord),
        );
      } finally {
        await joined.close();
      }
    } finally {
      if (head.pid !== undefined) process.kill(-head.pid, 'SIGTERM');
      // `ray start` records its cluster for later `address: 'auto'` lookups; that cluster is gone now.
      const clusterFile = '/tmp/ray/ray_current_cluster';
      if (existsSync(clusterFile) && readFileSync(clusterFile, 'utf8').includes(`:${port}`))
        rmSync(clusterFile);
    }
  }, 300_000);
});

describe('arc-ttft run --ray / --workers', () => {
  const base = { model: 'embedded', out: 'out', mode: 'single-task' as const, resume: true };
  it('maps to the ray option; --workers alone means --ray auto; neither means a local engine', () => {
    expect(runOptionsFromFlags({ ...base, ray: 'head:6379', workers: 4 }).ray).toEqual({
      address: 'head:6379',
      workers: 4,
    });
    expect(runOptionsFromFlags({ ...base, workers: 2 }).ray).toEqual({ address: 'auto', workers: 2 });
    expect(runOptionsFromFlags({ ...base, ray: 'local' }).ray).toEqual({ address: 'local' });
    expect(runOptionsFromFlags(base).ray).toBeUndefined();
  });

  it('refuses whole-set mode on Ray before starting anything', async () => {
    await expect(
      runSingleTaskTTFT(tasksFile, {
        ...options(join(dir, 'ws')),
        mode: 'whole-set',
        ray: { address: 'local' },
      }),
    ).rejects.toThrow(/whole-set/);
  });
});

describe.skipIf(!HAS_RAY)('a worker that dies for good', () => {
  it('hands its task to a live worker, even one that had run out of work; with none left it fails unjournalled', async () => {
    // Two private clusters at once would share the 2 CPUs: this test needs its own pool (no restarts).
    await pool?.close();
    pool = undefined;
    const p = await createRayPool(
      { address: 'local', workers: 2, localCpus: 2, maxWorkerRestarts: 0 },
      engineOptions(),
    );
    try {
      // A long task and a short one, one per worker (longest first): when the short one is done, its worker has
      // nothing left to take, and then the long task's worker dies.
      const rng = createRng(7);
      const grid = (n: number): Grid =>
        Array.from({ length: n }, () => Array.from({ length: n }, () => rng.int(10)));
      const answer: Grid = [
        [1, 2],
        [3, 4],
      ];
      const tasks: TaskSet = {
        long: {
          train: Array.from({ length: 5 }, () => ({ input: grid(12), output: answer })),
          test: [{ input: grid(12) }],
        },
        short: constantTasks(1).const0!,
      };
      const events: RunEvent[] = [];
      let killed: number | undefined;
      const result = await runSingleTaskTTFT(tasks, options(join(dir, 'retired')), {
        pool: p,
        onEvent: (e) => {
          events.push(e);
          if (e.type === 'task_finished' && e.record.taskId === 'short' && e.done === 1) {
            const started = events.find((x) => x.type === 'task_started' && x.taskId === 'long');
            killed = started?.type === 'task_started' ? started.worker : undefined;
            if (killed !== undefined) void p.killWorker(killed);
          }
        },
      });
      expect(killed).toBeDefined();
      expect(p.engines[killed!]!.retired).toBe(true);
      const starts = events.flatMap((e) =>
        e.type === 'task_started' && e.taskId === 'long' ? [e.worker] : [],
      );
      expect(starts).toEqual([killed, 1 - killed!]);
      expect(result.records.map((r) => `${r.taskId}:${r.status}`)).toEqual(['long:done', 'short:done']);

      // The last worker dies too: its task fails for want of a worker, unjournalled, so that a resume runs it.
      const out = join(dir, 'no-worker');
      const alone = await runSingleTaskTTFT({ short: tasks.short! }, options(out), {
        pool: p,
        onEvent: (e) => {
          if (e.type === 'task_started' && e.worker !== undefined) void p.killWorker(e.worker);
        },
      });
      expect(alone.records[0]).toMatchObject({ status: 'failed', error: { type: 'NoWorkerError' } });
      expect(readJournal(out)).toEqual([]);
    } finally {
      await p.close();
    }
  }, 300_000);
});

describe('Ray missing', () => {
  const bare = ['python3', '/usr/bin/python3'].find(
    (bin) =>
      spawnSync(bin, ['-c', 'import sys; import ray'], { stdio: 'ignore' }).status === 1 &&
      spawnSync(bin, ['-c', 'import sys; assert sys.version_info >= (3, 10)'], { stdio: 'ignore' }).status ===
        0,
  );
  it.skipIf(bare === undefined)(
    'is a SetupError that says how to install it',
    async () => {
      const error = await createRayPool({ address: 'local', workers: 1 }, { model, pythonBin: bare! }).catch(
        (e) => e,
      );
      expect(error).toBeInstanceOf(SetupError);
      expect(error.reason).toBe('extra_missing');
      expect(error.message).toMatch(/arc-ttft setup --ray/);
    },
    120_000,
  );
});
