/**
 * runSingleTaskTTFT end to end on CPU with a tiny random model: complete submissions, resume after
 * kill -9, invalid and over-long tasks, timeouts, the three modes, and failing up front.
 */
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkSubmission,
  createEngine,
  type Engine,
  FileError,
  type Grid,
  loadTasks,
  makeTinyModel,
  type RunEvent,
  type RunOptions,
  runSingleTaskTTFT,
  type TaskRecord,
  type TaskSet,
  ValidationError,
  withLeftOutTasks,
} from '../src/index.js';
import { LOCK_FILE } from '../src/ttft/lock.js';
import { constantTasks, PY, ROOT, readJournal, roundedRecord, stableRecord } from './helpers.js';

let dir: string;
let model: string;

function options(out: string, extra: Partial<RunOptions> = {}): RunOptions {
  return {
    out,
    engine: { model, threads: 1, lora: { modulesToSave: ['embed_tokens', 'lm_head'] }, ...PY },
    train: { steps: 40, lr: 2e-3, transforms: ['identity'], colourPermutation: 'none' },
    predict: { augmentations: 2, transforms: ['identity'], colourPermutation: 'none' },
    ...extra,
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'arc-ttft-run-'));
  model = (await makeTinyModel(join(dir, 'tiny'), PY)).path;
  writeFileSync(join(dir, 'const.json'), JSON.stringify(constantTasks(4)));
}, 180_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('runSingleTaskTTFT', () => {
  let reference: Awaited<ReturnType<typeof runSingleTaskTTFT>>;
  // One engine for the runs that do not test its life (a start costs seconds); the others make their own.
  let shared: Engine;
  beforeAll(async () => {
    shared = await createEngine(options('').engine);
  }, 120_000);
  afterAll(() => shared.close());

  it('runs every task, writes a complete submission, the journal and metrics', async () => {
    const out = join(dir, 'ref');
    const events: string[] = [];
    reference = await runSingleTaskTTFT(join(dir, 'const.json'), options(out), {
      onEvent: (e) => events.push(e.type),
    });
    const tasks = constantTasks(4);
    checkSubmission(reference.submission, tasks);
    expect(reference.records.map((r) => r.status)).toEqual(['done', 'done', 'done', 'done']);
    expect(reference.records.every((r) => r.train?.steps === 40)).toBe(true);
    // Fine-tuning each task alone learns constant answers (a random tiny base cannot guess them); not
    // all of them, since inference shows one more context pair than leave-one-out training did.
    expect(reference.score?.score).toBeGreaterThan(0);
    expect(JSON.parse(readFileSync(join(out, 'submission.json'), 'utf8'))).toEqual(reference.submission);
    expect(readJournal(out)).toHaveLength(4);
    expect(JSON.parse(readFileSync(join(out, 'metrics.json'), 'utf8')).score).toBe(reference.score?.score);
    expect(events[0]).toBe('run_started');
    expect(events).toContain('train_step');
    expect(events.filter((t) => t === 'task_finished')).toHaveLength(4);
    expect(events.at(-1)).toBe('run_finished');
  }, 180_000);

  it('resumes after kill -9 and ends with the same submission as an uninterrupted run', async () => {
    const out = join(dir, 'killed');
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
    const child = spawn(
      process.execPath,
      [
        '--import',
        tsx,
        join(ROOT, 'test/fixtures/node/run-child.ts'),
        join(dir, 'const.json'),
        JSON.stringify(options(out)),
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let finished = 0;
    await new Promise<void>((resolveKill, reject) => {
      child.stdout.on('data', (d) => {
        finished += String(d)
          .split('\n')
          .filter((l) => l.startsWith('finished')).length;
        if (finished >= 2) {
          child.kill('SIGKILL');
          resolveKill();
        }
      });
      child.on('exit', () => reject(new Error('the child finished before it was killed')));
    });
    await new Promise((r) => child.on('exit', r));
    const partial = readJournal(out).length;
    expect(partial).toBeGreaterThanOrEqual(2);
    expect(partial).toBeLessThan(4);
    // The submission on disk is complete even now.
    checkSubmission(JSON.parse(readFileSync(join(out, 'submission.json'), 'utf8')), constantTasks(4));

    const events: { type: string; resumed?: number }[] = [];
    const resumed = await runSingleTaskTTFT(join(dir, 'const.json'), options(out), {
      onEvent: (e) => events.push(e),
    });
    expect(events[0]).toMatchObject({ type: 'run_started', resumed: partial });
    expect(resumed.submission).toEqual(reference.submission);
    expect(resumed.records.map(stableRecord)).toEqual(reference.records.map(stableRecord));
  }, 240_000);

  it('drops a torn last journal line before appending, so the resumed records stay readable', async () => {
    const out = join(dir, 'torn');
    mkdirSync(out);
    const lines = readFileSync(join(dir, 'ref', 'results.jsonl'), 'utf8').split('\n');
    // the run line, two tasks, and the third cut mid-write (as by kill -9)
    const torn = lines[3]!.slice(0, 40);
    writeFileSync(join(out, 'results.jsonl'), `${lines.slice(0, 3).join('\n')}\n${torn}`);
    const resumed = await runSingleTaskTTFT(join(dir, 'const.json'), options(out));
    const records = readJournal(out); // throws on an unreadable line (the torn one glued to the next record)
    expect(records.map((r) => r.taskId).sort()).toEqual(['const0', 'const1', 'const2', 'const3']);
    expect(resumed.submission).toEqual(reference.submission);
  }, 120_000);

  it('runs a task again on resume when its test inputs changed since its record', async () => {
    const out = join(dir, 'changed');
    mkdirSync(out);
    writeFileSync(join(out, 'results.jsonl'), readFileSync(join(dir, 'ref', 'results.jsonl')));
    const tasks = constantTasks(4);
    tasks.const1!.test.push({ ...tasks.const1!.test[0]! });
    const events: RunEvent[] = [];
    const r = await runSingleTaskTTFT(tasks, options(out), {
      engine: shared,
      onEvent: (e) => events.push(e),
    });
    expect(events[0]).toMatchObject({ type: 'run_started', resumed: 3 });
    expect(r.records.find((x) => x.taskId === 'const1')!.attempts).toHaveLength(2);
    checkSubmission(r.submission, tasks);
  }, 120_000);

  it('refuses to resume a journal written with other options', async () => {
    const out = join(dir, 'ref');
    await expect(
      runSingleTaskTTFT(join(dir, 'const.json'), options(out, { seed: 99 }), { engine: shared }),
    ).rejects.toThrow(/different options \(seed: \d+ → 99\)/);
    // A given engine's own options count, not `options.engine` (which the run then does not use).
    const engine = await createEngine({ ...options('').engine, lora: { r: 4, modulesToSave: ['lm_head'] } });
    try {
      await expect(runSingleTaskTTFT(join(dir, 'const.json'), options(out), { engine })).rejects.toThrow(
        /different options \(lora\.r: \d+ → 4, lora\.modulesToSave: .*\["lm_head"\]\)/,
      );
    } finally {
      await engine.close();
    }
  }, 120_000);

  it('refuses a journal it cannot resume from, without touching it, and a folder another run holds', async () => {
    const tasks = join(dir, 'one.json');
    writeFileSync(tasks, JSON.stringify(constantTasks(1)));
    const run = (out: string) =>
      runSingleTaskTTFT(tasks, options(out, { mode: 'none' }), { engine: shared }).catch((e: unknown) => e);
    const good = join(dir, 'journal-good');
    await run(good);
    const goodLines = readFileSync(join(good, 'results.jsonl'), 'utf8').split('\n');
    const cases: [string, string, RegExp][] = [
      // Not our file: never truncated, with or without a last newline, JSON or not.
      ['foreign', '{"x":1}\n', /line 1: this file is not an arc-ttft journal/],
      ['foreign-one-line', '{"my":"results","n":1}', /line 1: this file is not an arc-ttft journal/],
      ['foreign-csv', 'col1,col2\n1,2\n', /line 1: this file is not an arc-ttft journal/],
      ['null', `${goodLines[0]}\nnull\n`, /line 2: not a journal record/],
      [
        'torn-middle',
        `${goodLines[0]}\n{"type":"ta\n${goodLines[1]}\n`,
        /line 2: not JSON \(was the folder written by two runs at once\?\)/,
      ],
      [
        'no-attempts',
        `${goodLines[0]}\n${JSON.stringify({ ...JSON.parse(goodLines[1]!), attempts: null })}\n`,
        /line 2: a task line the run cannot resume from \(attempts: /,
      ],
    ];
    for (const [name, text, message] of cases) {
      const out = join(dir, `journal-${name}`);
      mkdirSync(out, { recursive: true });
      writeFileSync(join(out, 'results.jsonl'), text);
      const error = await run(out);
      expect(error, name).toBeInstanceOf(ValidationError);
      expect((error as Error).message, name).toMatch(message);
      expect((error as Error).message, name).toContain('--no-resume');
      expect(readFileSync(join(out, 'results.jsonl'), 'utf8'), name).toBe(text);
      expect(existsSync(join(out, LOCK_FILE)), name).toBe(false);
    }
    // A torn LAST line is a run killed mid-write: dropped, and the run resumes.
    const torn = join(dir, 'journal-torn-last');
    mkdirSync(torn, { recursive: true });
    writeFileSync(join(torn, 'results.jsonl'), `${goodLines[0]}\n${goodLines[1]}\n{"type":"ta`);
    const resumed = await run(torn);
    expect(resumed).not.toBeInstanceOf(Error);
    expect(readJournal(torn)).toHaveLength(1);
    // A journal that is a folder: a FileError naming it, not a raw EISDIR.
    const folder = join(dir, 'journal-folder');
    mkdirSync(join(folder, 'results.jsonl'), { recursive: true });
    const eisdir = await run(folder);
    expect(eisdir).toBeInstanceOf(FileError);
    expect((eisdir as FileError).path).toBe(join(folder, 'results.jsonl'));

    // A journal that cannot be written (a full disk: /dev/full refuses every write) is a FileError naming it,
    // and the folder is not left locked.
    if (existsSync('/dev/full')) {
      const full = join(dir, 'journal-full');
      mkdirSync(full, { recursive: true });
      symlinkSync('/dev/full', join(full, 'results.jsonl'));
      const error = await runSingleTaskTTFT(tasks, options(full, { mode: 'none', resume: false }), {
        engine: shared,
      }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FileError);
      expect((error as Error).message).toContain('the journal cannot be written');
      expect((error as FileError).path).toBe(join(full, 'results.jsonl'));
      expect(existsSync(join(full, LOCK_FILE))).toBe(false);
    }

    // A live run's lock: refused before the model loads, naming the holder; the lock is left as it was.
    const held = join(dir, 'locked');
    mkdirSync(held, { recursive: true });
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60_000)']);
    const owner = JSON.stringify({ pid: other.pid, host: hostname(), startedAt: 'then', token: 'x' });
    writeFileSync(join(held, LOCK_FILE), owner);
    try {
      const busy = await run(held);
      expect(busy).toBeInstanceOf(FileError);
      expect((busy as Error).message).toContain(`another arc-ttft run (pid ${other.pid} on ${hostname()}`);
      expect(readFileSync(join(held, LOCK_FILE), 'utf8')).toBe(owner);
    } finally {
      other.kill();
    }
    // A dead run's lock is taken over, and a finished run leaves none.
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => dead.on('exit', resolve));
    writeFileSync(
      join(held, LOCK_FILE),
      JSON.stringify({ pid: dead.pid, host: hostname(), startedAt: 'then' }),
    );
    expect(await run(held)).not.toBeInstanceOf(Error);
    expect(existsSync(join(held, LOCK_FILE))).toBe(false);
    // Two runs started together into one folder: one runs, the other is refused.
    const both = await Promise.all([run(join(dir, 'twice')), run(join(dir, 'twice'))]);
    expect(both.filter((r) => r instanceof FileError)).toHaveLength(1);
    expect(readJournal(join(dir, 'twice'))).toHaveLength(1);
  }, 120_000);

  it('runs the valid tasks of a set with invalid ones and reports those', async () => {
    const set = constantTasks(2) as Record<string, unknown>;
    set.bad = { train: [], test: [{ input: [[1]] }] };
    writeFileSync(join(dir, 'mixed.json'), JSON.stringify(set));
    const solutions = {
      const0: [constantTasks(2).const0!.test[0]!.output],
      const1: [constantTasks(2).const1!.test[0]!.output],
      bad: [[[1]]],
    };
    writeFileSync(join(dir, 'mixed-solutions.json'), JSON.stringify(solutions));
    const r = await runSingleTaskTTFT(
      join(dir, 'mixed.json'),
      options(join(dir, 'mixed'), { train: { steps: 2 }, solutions: join(dir, 'mixed-solutions.json') }),
      { engine: shared },
    );
    expect(r.records.map((x) => x.taskId)).toEqual(['const0', 'const1']);
    expect(r.invalid).toHaveLength(1);
    expect(r.invalid[0]!.message).toContain('bad');
    expect(r.statusCounts.invalid).toBe(1);
    // Kaggle scores the invalid task's fallback answer too (here the input, which is its solution).
    expect(r.score?.nTasks).toBe(3);
    expect(r.score?.tasks.bad?.score).toBe(1);
    // Journalled, so that the report (from the run or from results.jsonl) shows it.
    const badRecord = readJournal(join(dir, 'mixed')).find((x) => x.taskId === 'bad');
    expect(badRecord).toMatchObject({ status: 'invalid', fallback: [0], error: { type: 'ValidationError' } });
    expect(readFileSync(join(dir, 'mixed', 'report.html'), 'utf8')).toContain(
      'data-task="bad" data-status="invalid"',
    );
    // An error about a task that loaded anyway (a second file of a valid id) makes no invalid record; a task
    // invalid now but journalled before is in the selection, not outside it.
    const folder = join(dir, 'dup-folder');
    mkdirSync(folder, { recursive: true });
    const tasks = constantTasks(2);
    writeFileSync(join(folder, 'const0.json'), JSON.stringify(tasks.const0));
    writeFileSync(join(folder, 'const0.JSON'), JSON.stringify(tasks.const0));
    writeFileSync(join(folder, 'const1.json'), JSON.stringify(tasks.const1));
    const starts: RunEvent[] = [];
    const dupOptions = options(join(dir, 'dup-out'), { mode: 'none' });
    const onEvent = (e: RunEvent) => {
      if (e.type === 'run_started') starts.push(e);
    };
    const first = await runSingleTaskTTFT(folder, dupOptions, { engine: shared, onEvent });
    expect(first.records.map((x) => [x.taskId, x.status])).toEqual([
      ['const0', 'done'],
      ['const1', 'done'],
    ]);
    expect(first.invalid.map((e) => e.message)).toEqual([expect.stringContaining('const0')]);
    writeFileSync(join(folder, 'const1.json'), JSON.stringify({ ...tasks.const1, train: [] }));
    const second = await runSingleTaskTTFT(folder, dupOptions, { engine: shared, onEvent });
    expect(readJournal(join(dir, 'dup-out')).map((x) => [x.taskId, x.status])).toEqual([
      ['const0', 'done'],
      ['const1', 'done'],
      ['const1', 'invalid'],
    ]);
    expect(second.statusCounts).toMatchObject({ done: 1, invalid: 2 });
    // Starting again over the same invalid task adds no line: the journal does not grow at every start.
    const third = await runSingleTaskTTFT(folder, dupOptions, { engine: shared, onEvent });
    expect(readJournal(join(dir, 'dup-out'))).toHaveLength(3);
    expect(third.statusCounts).toMatchObject({ done: 1, invalid: 2 });
    expect(starts).toMatchObject([
      { resumed: 0, outside: 0 },
      { resumed: 1, outside: 0 },
      { resumed: 1, outside: 0 },
    ]);
    // The invalid task is not run, but answered with the fallback: Kaggle rejects a submission missing an id.
    expect(Object.keys(r.submission)).toEqual(['const0', 'const1', 'bad']);
    expect(r.submission.bad).toEqual([{ attempt_1: [[1]], attempt_2: [[1]] }]);
    // It checks against the valid tasks plus the invalid ones' stand-ins, as loaded leniently.
    const loaded = await loadTasks(join(dir, 'mixed.json'), { mode: 'lenient' });
    checkSubmission(r.submission, withLeftOutTasks(loaded.tasks, loaded.leftOutTests));
    expect(() => checkSubmission(r.submission, loaded.tasks)).toThrow(/not in the task set/);
    // A task set passed as an object is checked the same way (a ragged test input broke the submission).
    const object = constantTasks(2) as Record<string, unknown>;
    object.ragged = { train: constantTasks(1).const0!.train, test: [{ input: [[1, 2], [3]] }] };
    const fromObject = await runSingleTaskTTFT(
      object as TaskSet,
      options(join(dir, 'mixed-object'), { train: { steps: 2 } }),
      { engine: shared },
    );
    // An unreadable test input of an invalid task is answered [[0]].
    const raggedInput = constantTasks(1).const0!;
    const unreadable = await runSingleTaskTTFT(
      {
        ...constantTasks(1),
        ragged: { train: raggedInput.train, test: [{ input: [[1, 2], [3]] }] },
      } as TaskSet,
      options(join(dir, 'unreadable'), { mode: 'none' }),
      { engine: shared },
    );
    expect(unreadable.submission.ragged).toEqual([{ attempt_1: [[0]], attempt_2: [[0]] }]);
    // `__proto__` is a task id like any other (plain assignment would have set the prototype instead).
    const proto = JSON.parse(JSON.stringify(constantTasks(2)).replace('"const0"', '"__proto__"')) as TaskSet;
    const odd = await runSingleTaskTTFT(proto, options(join(dir, 'proto-id'), { train: { steps: 2 } }), {
      engine: shared,
    });
    expect(Object.keys(odd.submission).sort()).toEqual(['__proto__', 'const1']);
    expect(odd.score?.nTasks).toBe(2);
    expect(fromObject.invalid.map((e) => e.message)).toEqual([
      expect.stringContaining('"ragged": test[0].input[1]'),
    ]);
    expect(Object.keys(fromObject.submission)).toEqual(['const0', 'const1', 'ragged']);
  }, 120_000);

  it('answers a task that does not fit even with one pair with a fallback, and records why', async () => {
    const tasks = constantTasks(2);
    const big: Grid = Array.from({ length: 12 }, () => new Array<number>(12).fill(3));
    tasks.big = { train: [{ input: big, output: big }], test: [{ input: big, output: big }] };
    const r = await runSingleTaskTTFT(
      tasks,
      options(join(dir, 'long'), { maxSeqLen: 200, train: { steps: 2 } }),
      { engine: shared },
    );
    const rec = r.records.find((x) => x.taskId === 'big')!;
    expect(rec.status).toBe('too_long');
    expect(rec.error?.type).toBe('TaskTooLongError');
    expect(rec.fallback).toEqual([0]);
    expect(r.submission.big).toEqual([{ attempt_1: big, attempt_2: big }]);
    expect(r.records.filter((x) => x.status === 'done')).toHaveLength(2);
  }, 120_000);

  it('records a task that runs past its time limit, restarts Python and goes on', async () => {
    const r = await runSingleTaskTTFT(
      constantTasks(2),
      options(join(dir, 'slow'), { taskTimeoutMs: 1500, train: { steps: 100_000 }, only: ['const0'] }),
    );
    expect(r.records[0]!.status).toBe('timed_out');
    expect(r.records[0]!.error?.type).toBe('TimeoutError');
    const next = await runSingleTaskTTFT(
      constantTasks(2),
      options(join(dir, 'slow2'), { train: { steps: 2 } }),
      { engine: shared },
    );
    expect(next.statusCounts.done).toBe(2);
  }, 120_000);

  it('records a task whose Python crashed as failed, restarts it and goes on: only that task is lost', async () => {
    const engine = await createEngine(options('').engine);
    try {
      let killed = false;
      const r = await runSingleTaskTTFT(join(dir, 'const.json'), options(join(dir, 'crash')), {
        engine,
        onEvent: (e) => {
          if (e.type === 'train_step' && e.taskId === 'const1' && !killed) {
            killed = true;
            process.kill(engine.pythonPid!, 'SIGKILL');
          }
        },
      });
      expect(r.records.map((x) => x.status)).toEqual(['done', 'failed', 'done', 'done']);
      expect(r.records[1]!.error?.type).toBe('BridgeError(crashed)');
      expect(r.records[1]!.fallback).toEqual([0]);
      // The tasks after the crash match the uninterrupted run exactly.
      expect(r.records.filter((x) => x.taskId !== 'const1').map(stableRecord)).toEqual(
        reference.records.filter((x) => x.taskId !== 'const1').map(stableRecord),
      );
      expect(engine.startCount).toBe(2);
      // A resume runs the failed task again (retryFailed), unless told to keep it; then it matches the
      // uninterrupted run.
      const started: RunEvent[] = [];
      const onEvent = (e: RunEvent) => {
        if (e.type === 'run_started') started.push(e);
      };
      const kept = await runSingleTaskTTFT(
        join(dir, 'const.json'),
        options(join(dir, 'crash'), { retryFailed: false }),
        { engine, onEvent },
      );
      expect(kept.records.map((x) => x.status)).toEqual(['done', 'failed', 'done', 'done']);
      const retried = await runSingleTaskTTFT(join(dir, 'const.json'), options(join(dir, 'crash')), {
        engine,
        onEvent,
      });
      expect(retried.records.map(stableRecord)).toEqual(reference.records.map(stableRecord));
      // Another selection on the same folder: told how many finished tasks lie outside it.
      await runSingleTaskTTFT(join(dir, 'const.json'), options(join(dir, 'crash'), { only: ['const0'] }), {
        engine,
        onEvent,
      });
      expect(started).toMatchObject([
        { resumed: 4, retried: 0, outside: 0 },
        { resumed: 3, retried: 1, outside: 0 },
        { resumed: 1, retried: 0, outside: 3 },
      ]);
    } finally {
      await engine.close();
    }
  }, 240_000);

  it('predicts groups of tasks in one batch each (tasksPerBatch) with the results of one task at a time', async () => {
    const events: RunEvent[] = [];
    const r = await runSingleTaskTTFT(
      join(dir, 'const.json'),
      options(join(dir, 'grouped'), {
        tasksPerBatch: 3,
        // Compiled training too: the run keeps the group's slots early, and the losses match the eager ones.
        train: { ...options('').train, compile: true },
        predict: { ...options('').predict, decode: 'static' },
      }),
      { onEvent: (e) => events.push(e) },
    );
    // Groups [const0, const1, const2] and [const3]: three trainings, then one prediction for the three.
    const order = events
      .filter((e) => e.type === 'task_started' || e.type === 'task_finished')
      .map((e) => (e.type === 'task_started' ? `+${e.taskId}` : `-${e.record.taskId}`));
    expect(order).toEqual([
      '+const0',
      '+const1',
      '+const2',
      '-const0',
      '-const1',
      '-const2',
      '+const3',
      '-const3',
    ]);
    expect(r.records.map(roundedRecord)).toEqual(reference.records.map(roundedRecord));
    expect(r.submission).toEqual(reference.submission);
    // Each task's seconds are its own (its training, its share of the group's prediction), not the wall time
    // since it started, which counts the group's later trainings too: the sum stays within the run.
    expect(r.records.reduce((sum, x) => sum + x.seconds, 0)).toBeLessThan(r.seconds);
  }, 180_000);

  it('in a group, a crash loses the task in flight; the trained tasks of the group run again', async () => {
    const engine = await createEngine(options('').engine);
    try {
      let killed = false;
      const retried: string[] = [];
      const r = await runSingleTaskTTFT(
        join(dir, 'const.json'),
        options(join(dir, 'group-crash'), { tasksPerBatch: 4 }),
        {
          engine,
          onEvent: (e) => {
            if (e.type === 'task_retried') retried.push(`${e.taskId}:${e.worker ?? 'local'}:${e.retry}`);
            if (e.type === 'train_step' && e.taskId === 'const2' && !killed) {
              killed = true;
              process.kill(engine.pythonPid!, 'SIGKILL');
            }
          },
        },
      );
      expect(retried).toEqual(['const1:local:1', 'const0:local:1']);
      expect(r.records.map((x) => x.status)).toEqual(['done', 'done', 'failed', 'done']);
      expect(r.records[2]!.error?.type).toBe('BridgeError(crashed)');
      const same = (x: TaskRecord) => x.taskId !== 'const2';
      expect(r.records.filter(same).map(roundedRecord)).toEqual(
        reference.records.filter(same).map(roundedRecord),
      );
      expect(engine.startCount).toBe(2);
    } finally {
      await engine.close();
    }
  }, 240_000);

  it('shares a time budget over the tasks, lowering steps so the run finishes in time', async () => {
    const budgetMs = 16_000;
    const r = await runSingleTaskTTFT(
      join(dir, 'const.json'),
      options(join(dir, 'budget'), { timeBudgetMs: budgetMs, train: { steps: 1_000_000 } }),
    );
    expect(r.records.map((x) => x.status)).toEqual(['done', 'done', 'done', 'done']);
    for (const x of r.records) {
      expect(x.train!.steps).toBeGreaterThan(0);
      expect(x.train!.steps).toBeLessThan(1_000_000);
    }
    checkSubmission(r.submission, constantTasks(4));
    // The budget covers the tasks (the engine's start comes before it); allow for the machine's noise.
    expect(r.seconds * 1000).toBeLessThan(budgetMs * 1.5 + 20_000);
  }, 120_000);

  it('runs the whole-set and none modes through the same path', async () => {
    const whole = await runSingleTaskTTFT(
      join(dir, 'const.json'),
      options(join(dir, 'whole'), { mode: 'whole-set', wholeSetSteps: 160 }),
      { engine: shared },
    );
    expect(whole.records.every((r) => r.status === 'done' && r.train === undefined)).toBe(true);
    expect(readFileSync(join(dir, 'whole', 'results.jsonl'), 'utf8')).toContain('"type":"whole_set"');
    const none = await runSingleTaskTTFT(
      join(dir, 'const.json'),
      options(join(dir, 'none'), { mode: 'none' }),
      { engine: shared },
    );
    expect(none.records.every((r) => r.status === 'done' && r.train === undefined)).toBe(true);
    checkSubmission(none.submission, constantTasks(4));
    // The base model has not seen these tasks.
    expect(none.score!.score).toBeLessThan(reference.score!.score);
  }, 240_000);

  it('whole-set: trains again when a resume brings other tasks; records every task too long when none fits', async () => {
    const out = join(dir, 'whole-grown');
    const whole = (extra: Partial<RunOptions>) =>
      runSingleTaskTTFT(
        join(dir, 'const.json'),
        options(out, { mode: 'whole-set', wholeSetSteps: 4, ...extra }),
        { engine: shared },
      );
    await whole({ limit: 2 });
    const grown = await whole({});
    expect(grown.records.map((x) => x.status)).toEqual(['done', 'done', 'done', 'done']);
    const adapters = readFileSync(join(out, 'results.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"type":"whole_set"'))
      .map((l) => JSON.parse(l) as { samples: number });
    // the second adapter trained on the 4 tasks' samples, the first on 2 tasks'
    expect(adapters).toHaveLength(2);
    expect(adapters[1]!.samples).toBeGreaterThan(adapters[0]!.samples);

    const tooLong = await runSingleTaskTTFT(
      join(dir, 'const.json'),
      options(join(dir, 'whole-too-long'), { mode: 'whole-set', maxSeqLen: 40 }),
      { engine: shared },
    );
    expect(tooLong.records.map((x) => x.status)).toEqual(['too_long', 'too_long', 'too_long', 'too_long']);
    checkSubmission(tooLong.submission, constantTasks(4));
  }, 240_000);

  it('stops cleanly when aborted during whole-set training: aborted result, journal and submission kept', async () => {
    const controller = new AbortController();
    const out = join(dir, 'whole-abort');
    const result = await runSingleTaskTTFT(
      join(dir, 'const.json'),
      {
        ...options(out, { mode: 'whole-set', wholeSetSteps: 5000 }),
        train: { ...options(out).train, progressEvery: 1 },
      },
      {
        signal: controller.signal,
        onEvent: (e) => e.type === 'train_step' && e.step >= 2 && controller.abort(),
      },
    );
    expect(result.aborted).toBe(true);
    expect(result.records).toHaveLength(0);
    expect(readFileSync(join(out, 'results.jsonl'), 'utf8')).not.toContain('"type":"whole_set"');
    // The submission on disk is complete (fallbacks) even though nothing ran.
    checkSubmission(JSON.parse(readFileSync(join(out, 'submission.json'), 'utf8')), constantTasks(4));
  }, 120_000);

  it('fails before any work when the output folder cannot be written or the model does not exist', async () => {
    writeFileSync(join(dir, 'a-file'), 'x');
    await expect(
      runSingleTaskTTFT(constantTasks(1), options(join(dir, 'a-file', 'out'))),
    ).rejects.toBeInstanceOf(FileError);
    await expect(
      runSingleTaskTTFT(constantTasks(1), {
        ...options(join(dir, 'nomodel')),
        engine: { model: join(dir, 'missing') },
      }),
    ).rejects.toThrow(/model folder not found/);
  }, 60_000);

  it('fails before any work on bad input as a whole: no valid task, an unknown `only` id, bad solutions', async () => {
    const nomodel = { ...options(join(dir, 'bad-input')), engine: { model: join(dir, 'missing') } };
    const failure = (tasks: string | TaskSet, extra: Partial<RunOptions> = {}) =>
      runSingleTaskTTFT(tasks, { ...nomodel, ...extra }).catch((e: unknown) => e);
    // Every check comes before the model: none of these gets as far as "model folder not found".
    const ragged = { train: constantTasks(1).const0!.train, test: [{ input: [[1, 2], [3]] }] };
    expect(await failure({ ragged } as unknown as TaskSet)).toMatchObject({
      name: 'ValidationError',
      source: '(object)',
      message: expect.stringContaining(
        'no valid task (1 invalid; the first: (object): task "ragged": test[0].input[1]',
      ),
    });
    // The tasks folder as the output folder: a later run would read the outputs as tasks.
    mkdirSync(join(dir, 'folder-set'), { recursive: true });
    expect(await failure(join(dir, 'folder-set'), { out: `${join(dir, 'folder-set')}/` })).toMatchObject({
      name: 'ValidationError',
      path: 'out',
      message: expect.stringContaining('is the tasks folder'),
    });
    writeFileSync(join(dir, 'empty.json'), '{}');
    expect(await failure(join(dir, 'empty.json'))).toMatchObject({
      message: `${join(dir, 'empty.json')}: no task to run`,
    });
    for (const tasks of [join(dir, 'const.json'), constantTasks(4)]) {
      expect(await failure(tasks, { only: ['const1', 'nosuch'] })).toMatchObject({
        name: 'ValidationError',
        path: 'only',
        message: expect.stringContaining('task id "nosuch" is not in'),
      });
    }
    // Solutions: a broken entry, a count that differs from the test inputs, another set's file.
    const solutions = (name: string, value: unknown) => {
      writeFileSync(join(dir, name), JSON.stringify(value));
      return join(dir, name);
    };
    const answer = constantTasks(4).const1!.test[0]!.output!;
    expect(
      await failure(join(dir, 'const.json'), { solutions: solutions('s1.json', { const1: [[[10]]] }) }),
    ).toMatchObject({ name: 'ValidationError', taskId: 'const1', path: '["const1"][0][0][0]' });
    expect(
      await failure(constantTasks(4), { solutions: solutions('s2.json', { const1: [answer, answer] }) }),
    ).toMatchObject({ name: 'ValidationError', taskId: 'const1', path: 'test[1].output' });
    expect(
      await failure(join(dir, 'const.json'), { solutions: solutions('s3.json', { other: [answer] }) }),
    ).toMatchObject({ name: 'ValidationError', message: expect.stringContaining('has none of the ids') });
    expect(await failure(join(dir, 'const.json'), { solutions: join(dir, 'no-such.json') })).toBeInstanceOf(
      FileError,
    );
    // Good solutions get as far as the model.
    expect(
      await failure(constantTasks(4, { solutions: false }), {
        solutions: solutions('s4.json', { const1: [answer] }),
      }),
    ).toMatchObject({ message: expect.stringMatching(/model folder not found/) });
  }, 60_000);
});
