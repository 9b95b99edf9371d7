/**
 * `arc-ttft run` as a user runs it: the built CLI (`dist/cli.js`) in a child process, with a tiny random
 * model on CPU. Exit codes, what goes to stdout and stderr, the files in the output folder, failing up
 * front, and Ctrl-C followed by a resume.
 *
 * The built CLI rather than `src/cli/main.ts` under tsx: it is what `npx arc-ttft` and the quickstart
 * run, so this also covers the bundle (the forked `dist/bridge-host.js`, the package root and sample
 * data found from `dist/`, the shebang build), and a SIGINT reaches one plain Node process. `npm test`
 * builds first; run alone, the test builds only when `dist/cli.js` is missing, so after editing `src/`
 * run `npx tsup` (or `npm test`) before it.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadTasks } from '../src/data/load.js';
import { checkSubmission } from '../src/data/split.js';
import type { Submission, TaskSet } from '../src/schemas.js';
import { makeTinyModel } from '../src/ttft/engine.js';
import { ROOT, constantTasks as sharedConstantTasks } from './helpers.js';

const CLI = join(ROOT, 'dist', 'cli.js');
const SAMPLE = join(ROOT, 'data', 'sample');
const PYTHON = process.env.ARC_TTFT_PYTHON;
/** The interpreter (when the suite names one) and one torch thread: the machine is shared. */
const ENGINE_FLAGS = [...(PYTHON ? ['--python', PYTHON] : []), '--threads', '1'];

let dir: string;
let model: string;
const children = new Set<ChildProcess>();

interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Starts `node dist/cli.js <args>`; stdout and stderr are pipes (no TTY, so plain progress lines). */
function startCli(args: readonly string[]): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1' },
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

/** Collects a started CLI's output until it exits. */
function finish(child: ChildProcess): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => {
    stdout += String(d);
  });
  child.stderr?.on('data', (d) => {
    stderr += String(d);
  });
  return new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

const runCli = (args: readonly string[]): Promise<CliResult> => finish(startCli(args));

/** The constant-answer tasks without their solutions, as a user's challenges file would be. */
const constantTasks = (n: number): TaskSet => sharedConstantTasks(n, { solutions: false });

/** Every line of a journal, parsed (throws on a torn or corrupt line). */
function journalLines(out: string): { type: string; taskId?: string }[] {
  return readFileSync(join(out, 'results.jsonl'), 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as { type: string; taskId?: string });
}

const taskIds = (out: string): string[] =>
  journalLines(out).flatMap((v) => (v.type === 'task' && v.taskId !== undefined ? [v.taskId] : []));

const readSubmission = (out: string): Submission =>
  JSON.parse(readFileSync(join(out, 'submission.json'), 'utf8')) as Submission;

/** Process ids below `root` (Linux `/proc`); undefined where there is no `/proc`. */
function descendants(root: number): number[] | undefined {
  if (!existsSync('/proc/self/stat')) return undefined;
  const byParent = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    byParent.set(ppid, [...(byParent.get(ppid) ?? []), Number(name)]);
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of byParent.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/** True while `pid` exists and is not a zombie (a zombie has exited; it only waits to be reaped). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (condition()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return condition();
}

beforeAll(async () => {
  if (!existsSync(CLI)) execFileSync('npx', ['tsup'], { cwd: ROOT, stdio: 'ignore' });
  dir = mkdtempSync(join(tmpdir(), 'arc-ttft-cli-run-'));
  model = (await makeTinyModel(join(dir, 'tiny'), PYTHON !== undefined ? { pythonBin: PYTHON } : {})).path;
}, 300_000);

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('arc-ttft run', () => {
  // Two of the six sample tasks keep this quick; the run loads the solutions for all of them.
  const sampleArgs = (out: string): string[] => [
    'run',
    '--tasks',
    join(SAMPLE, 'challenges.json'),
    '--solutions',
    join(SAMPLE, 'solutions.json'),
    '--model',
    model,
    '--out',
    out,
    '--steps',
    '5',
    '--augmentations',
    '2',
    '--only',
    '4cd1b7b2',
    '5783df64',
    ...ENGINE_FLAGS,
  ];

  it('runs the sample tasks, prints the metrics table and the report path, writes the four files', async () => {
    const out = join(dir, 'sample');
    const r = await runCli(sampleArgs(out));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('2 done in ');
    expect(r.stdout).toMatch(/Kaggle score: \d\.\d{4} \(.*\) over 2 task\(s\), 2 test output\(s\)/);
    expect(r.stdout).toMatch(/^vote2 +[\d.]+%/m);
    expect(r.stdout).toContain(`submission: ${join(out, 'submission.json')}`);
    expect(r.stdout).toContain(`report:     ${join(out, 'report.html')}`);
    // Progress goes to stderr: the model line, the task count, one line per finished task.
    expect(r.stderr).toMatch(/^model: .*qwen2.*, sdpa attention\)$/m);
    expect(r.stderr).toContain('single-task: 2 tasks');
    expect(r.stderr).toMatch(/^1\/2 4cd1b7b2 done /m);
    expect(r.stderr).toMatch(/^2\/2 5783df64 done /m);

    expect(readdirSync(out).sort()).toEqual([
      'metrics.json',
      'report.html',
      'results.jsonl',
      'submission.json',
    ]);
    const { tasks } = await loadTasks(join(SAMPLE, 'challenges.json'), { only: ['4cd1b7b2', '5783df64'] });
    checkSubmission(readSubmission(out), tasks);
    expect(taskIds(out)).toEqual(['4cd1b7b2', '5783df64']);
    const metrics = JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8'));
    expect(metrics.statusCounts.done).toBe(2);
    expect(Object.keys(metrics.tasks)).toEqual(['4cd1b7b2', '5783df64']);
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toMatch(/^<!doctype html>/i);
  }, 240_000);

  it('--json prints only parseable JSON on stdout (here resuming the finished run above)', async () => {
    const out = join(dir, 'sample');
    const r = await runCli([...sampleArgs(out), '--json']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({
      mode: 'single-task',
      statusCounts: { done: 2, too_long: 0, failed: 0, timed_out: 0, invalid: 0 },
      files: { submission: join(out, 'submission.json'), report: join(out, 'report.html') },
    });
    expect(typeof summary.score).toBe('number');
    expect(typeof summary.metrics.vote2).toBe('number');
    expect(r.stderr).toContain('2 already done (resumed)');
    expect(taskIds(out)).toEqual(['4cd1b7b2', '5783df64']);

    // Solutions that lack a task: no score, and a note naming the task instead of a silent gap.
    const partial = JSON.parse(readFileSync(join(SAMPLE, 'solutions.json'), 'utf8'));
    delete partial['5783df64'];
    const partialFile = join(dir, 'partial-solutions.json');
    writeFileSync(partialFile, JSON.stringify(partial));
    const args = sampleArgs(out);
    args[args.indexOf('--solutions') + 1] = partialFile;
    const unscored = await runCli([...args, '--json']);
    expect(unscored.code, unscored.stderr).toBe(0);
    expect(JSON.parse(unscored.stdout)).toMatchObject({ score: null, metrics: null });
    expect(unscored.stderr).toContain(
      'note: no score: the solutions lack test outputs of 1 task (5783df64); the score needs every one',
    );
    // The first run's metrics do not score this one: removed, not left beside the new submission.
    expect(existsSync(join(out, 'metrics.json'))).toBe(false);
  }, 240_000);

  it('runs the valid tasks of a set with invalid ones, reports those on stderr and exits 0', async () => {
    const set: Record<string, unknown> = { ...constantTasks(2) };
    set.no_train = { train: [], test: [{ input: [[1]] }] };
    set.ragged = { train: [{ input: [[1, 2], [3]], output: [[1]] }], test: [{ input: [[1]] }] };
    writeFileSync(join(dir, 'mixed.json'), JSON.stringify(set));
    const out = join(dir, 'mixed');
    const r = await runCli([
      'run',
      '--tasks',
      join(dir, 'mixed.json'),
      '--model',
      model,
      '--out',
      out,
      '--steps',
      '2',
      '--augmentations',
      '1',
      ...ENGINE_FLAGS,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('single-task: 2 tasks, 2 invalid (not run)');
    expect(r.stderr).toMatch(/^invalid task: .*no_train/m);
    expect(r.stderr).toMatch(/^invalid task: .*ragged.*train\[0\]\.input\[1\]/m);
    expect(r.stdout).toContain('2 done, 2 invalid in ');
    // Not run, but answered with the fallback (the test input), so the submission has every id.
    const submission = readSubmission(out);
    expect(Object.keys(submission)).toEqual(['const0', 'const1', 'no_train', 'ragged']);
    expect(submission.ragged).toEqual([{ attempt_1: [[1]], attempt_2: [[1]] }]);
    // No solutions, so no metrics.
    expect(readdirSync(out).sort()).toEqual(['report.html', 'results.jsonl', 'submission.json']);
  }, 240_000);

  it('fails with exit 1 before any work when the model does not exist', async () => {
    const out = join(dir, 'no-model');
    const r = await runCli(['run', '--model', join(dir, 'missing-model'), '--out', out, ...ENGINE_FLAGS]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error: ${join(dir, 'missing-model')}: model folder not found\n`);
    expect(r.stdout).toBe('');
    // The output folder was checked (created) first; nothing was written in it.
    expect(existsSync(out) ? readdirSync(out) : []).toEqual([]);
  }, 60_000);

  it('shows a Python failure as its type and message, and its traceback with --verbose', async () => {
    const broken = join(dir, 'broken-model');
    mkdirSync(broken, { recursive: true });
    writeFileSync(join(broken, 'config.json'), '{}');
    const args = ['run', '--model', broken, '--out', join(dir, 'broken-out'), ...ENGINE_FLAGS];
    const plain = await runCli(args);
    expect(plain.code).toBe(1);
    expect(plain.stderr).toMatch(/^error: ModelNotFoundError: model '.*broken-model': could not be loaded/);
    expect(plain.stderr).not.toContain('.traceback');
    expect(plain.stderr).toMatch(/\(--verbose shows the Python traceback\)\n$/);
    const verbose = await runCli([...args, '--verbose']);
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toContain('Traceback (most recent call last)');
  }, 120_000);

  it('says how to get the engine a Python that lacks its packages', async () => {
    // A bare venv: the standard library only, no torch.
    const bare = join(dir, 'bare-venv');
    spawnSync('python3', ['-m', 'venv', '--without-pip', bare], { stdio: 'ignore', timeout: 60_000 });
    const r = await runCli(['run', '--python', join(bare, 'bin', 'python'), '--out', join(dir, 'bare-out')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: ModuleNotFoundError: No module named '\w+'\nhint: .*`arc-ttft setup`/);
  }, 120_000);

  it('fails with exit 1 up front when the output folder cannot be written', async () => {
    writeFileSync(join(dir, 'a-file'), 'x');
    const out = join(dir, 'a-file', 'out');
    const r = await runCli(['run', '--model', model, '--out', out, ...ENGINE_FLAGS]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error: ${out}: output folder cannot be written\n`);
    expect(r.stdout).toBe('');
  }, 60_000);

  it('names the flag, not the option path, when a flag value is refused', async () => {
    const only = await runCli([
      'run',
      '--only',
      'nope',
      'a,b',
      '--out',
      join(dir, 'only-out'),
      ...ENGINE_FLAGS,
    ]);
    expect(only.code).toBe(1);
    expect(only.stderr).toBe(
      `error: --only: task id "nope" is not in ${join(SAMPLE, 'challenges.json')}\n` +
        `error: --only: task id "a,b" is not in ${join(SAMPLE, 'challenges.json')} (give several ids as separate values, not one joined by commas)\n`,
    );
    // Checked again by createEngine under its own name: still the flag.
    const fp16 = await runCli([
      'run',
      '--dtype',
      'float16',
      '--train-embeddings',
      '--out',
      join(dir, 'fp16-out'),
    ]);
    expect(fp16.code).toBe(1);
    expect(fp16.stderr).toMatch(/^error: --train-embeddings: with dtype 'float16' /);
  }, 60_000);

  it('exits 2 on a usage error, with the usage on stderr', async () => {
    const steps = await runCli(['run', '--steps', 'abc']);
    expect(steps.code).toBe(2);
    expect(steps.stderr).toContain(
      "option '--steps <n>' argument 'abc' is invalid. expected a positive integer",
    );
    expect(steps.stderr).toContain('Usage: arc-ttft run [options]');
    expect(steps.stdout).toBe('');
    const mode = await runCli(['run', '--mode', 'bogus']);
    expect(mode.code).toBe(2);
    expect(mode.stderr).toContain(
      "argument 'bogus' is invalid. Allowed choices are single-task, whole-set, none.",
    );
    // Past Node's longest timer every call would time out at once.
    const long = await runCli(['run', '--task-timeout', '600h']);
    expect(long.code).toBe(2);
    expect(long.stderr).toContain('expected at most 596h');
  }, 60_000);

  it('stops on Ctrl-C with an intact journal and no Python left, and the same command resumes', async () => {
    const TASKS = 4;
    writeFileSync(join(dir, 'const.json'), JSON.stringify(constantTasks(TASKS)));
    const out = join(dir, 'interrupted');
    const args = [
      'run',
      '--tasks',
      join(dir, 'const.json'),
      '--model',
      model,
      '--out',
      out,
      '--steps',
      '30',
      '--augmentations',
      '1',
      ...ENGINE_FLAGS,
    ];
    const child = startCli(args);
    const result = finish(child);
    let stderr = '';
    let below: number[] | undefined;
    // SIGINT once the first task is journalled, while the second one trains.
    await new Promise<void>((resolve, reject) => {
      child.stderr?.on('data', (d) => {
        stderr += String(d);
        if (/^1\/4 /m.test(stderr) && below === undefined) {
          below = descendants(child.pid!) ?? [];
          child.kill('SIGINT');
          resolve();
        }
      });
      child.on('exit', () => reject(new Error(`the run ended before it was interrupted:\n${stderr}`)));
    });
    // Ends within seconds: Python is stopped at once, the finished tasks' submission and report written.
    const exited = await waitFor(() => child.exitCode !== null || child.signalCode !== null, 15_000);
    expect(exited, 'the CLI did not exit within 15 s of SIGINT').toBe(true);
    const interrupted = await result;
    expect(interrupted.code, JSON.stringify(interrupted)).toBe(130);
    expect(interrupted.stderr).toContain('interrupted: stopping');
    expect(interrupted.stdout).toMatch(/stopped: [1-3] tasks? not run .*run the same command to resume/);
    expect(existsSync(join(out, 'report.html'))).toBe(true);

    // The bridge host and Python were found below the CLI, and none of them outlives it.
    if (below !== undefined && existsSync('/proc/self/stat')) {
      expect(below.length).toBeGreaterThanOrEqual(2);
      expect(await waitFor(() => below!.every((pid) => !alive(pid)), 5_000)).toBe(true);
    }

    // The journal: every line parses, one run header, one line per finished task.
    const lines = journalLines(out);
    expect(lines[0]?.type).toBe('run');
    const finished = taskIds(out);
    expect(finished.length).toBeGreaterThanOrEqual(1);
    expect(finished.length).toBeLessThan(TASKS);
    expect(new Set(finished).size).toBe(finished.length);
    // The submission on disk is complete even now (fallbacks for the tasks still to run).
    checkSubmission(readSubmission(out), constantTasks(TASKS));

    const resumed = await runCli(args);
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(
      `single-task: ${TASKS} tasks, ${finished.length} already done (resumed)`,
    );
    expect(resumed.stdout).toContain(`${TASKS} done in `);
    const all = taskIds(out);
    expect(all.slice(0, finished.length)).toEqual(finished);
    expect([...all].sort()).toEqual(['const0', 'const1', 'const2', 'const3']);
    checkSubmission(readSubmission(out), constantTasks(TASKS));
    expect(existsSync(join(out, 'report.html'))).toBe(true);
  }, 300_000);

  it('exits 130 with a clear message on Ctrl-C while Python is still starting', async () => {
    const out = join(dir, 'interrupted-early');
    const tasks = join(dir, 'early.json');
    writeFileSync(tasks, JSON.stringify(constantTasks(1)));
    const child = startCli([
      'run',
      '--tasks',
      tasks,
      '--model',
      model,
      '--out',
      out,
      '--json',
      ...ENGINE_FLAGS,
    ]);
    const result = finish(child);
    // 300 ms in, Python is still importing torch (seconds): the start fails, which is no error here.
    await new Promise((resolve) => setTimeout(resolve, 300));
    child.kill('SIGINT');
    const early = await result;
    expect(early.code, JSON.stringify(early)).toBe(130);
    expect(early.stderr).toContain('stopped before any task ran');
    expect(early.stderr).not.toContain('error:');
    // --json still gives JSON on stdout, saying that nothing ran.
    expect(JSON.parse(early.stdout)).toMatchObject({ aborted: true, statusCounts: {}, files: null });
  }, 60_000);
});
