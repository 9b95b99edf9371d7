import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJsonFile, taskFilePath } from '../src/data/fs.js';
import { loadSubmission, loadTasks } from '../src/data/load.js';
import { checkSubmission, joinPredictions, readPredictionFolder, splitTaskSet } from '../src/data/split.js';
import { FileError, ValidationError } from '../src/errors.js';
import type { Task, TaskSet } from '../src/schemas.js';
import { ARC1_EVALUATION, ROOT } from './helpers.js';

let tmp: string;
let sample: TaskSet;
/** A real task (ARC-AGI-1 evaluation 0c786b71: 3 train pairs of 3×4 → 6×8, one test) to break in each test. */
let base: Task;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'arc-ttft-bad-'));
  const dir = join(ROOT, 'data/sample');
  sample = (await loadTasks(join(dir, 'challenges.json'), { solutions: join(dir, 'solutions.json') })).tasks;
  base = sample['0c786b71']!;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let counter = 0;
/** Writes `text` to a fresh file in the temp folder and returns its path. */
function writeTmp(name: string, text: string): string {
  const dir = join(tmp, `case-${counter++}`);
  mkdirSync(dir);
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const copy = (task: Task): Task => structuredClone(task);

/** Loads `{[id]: task}` as a challenges file and returns the error it throws. */
async function loadError(id: string, task: unknown): Promise<ValidationError> {
  const path = writeTmp('challenges.json', JSON.stringify({ [id]: task }));
  const error = await loadTasks(path).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ValidationError);
  const v = error as ValidationError;
  expect(v.source).toBe(path);
  return v;
}

describe('malformed files', () => {
  it('invalid JSON → FileError with line, column and position', async () => {
    const text = '{\n  "train": [\n    {"input": [[1, 2]], "output": [[2, 1]]},\n  ],\n  "test": []\n}\n';
    const path = writeTmp('broken01.json', text);
    const error = await loadTasks(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FileError);
    expect((error as FileError).path).toBe(path);
    const position = text.lastIndexOf('],');
    expect((error as FileError).message).toBe(
      `${path}: invalid JSON at line 4, column 3 (position ${position}): trailing comma in array`,
    );
  });

  it('an unterminated string is located where it opens', async () => {
    const path = writeTmp('x.json', '{"abc": {"train": "oops}}');
    await expect(readJsonFile(path)).rejects.toThrow(
      /line 1, column 19 \(position 18\): unterminated string/,
    );
  });

  it('a missing file → FileError saying so', async () => {
    const path = join(tmp, 'nope.json');
    await expect(loadTasks(path)).rejects.toThrow(new FileError({ path, message: 'file not found' }).message);
  });

  it('a challenges file that is an array is rejected', async () => {
    const path = writeTmp('c.json', '[1, 2]');
    await expect(loadTasks(path)).rejects.toThrow(/must be a JSON object keyed by task id/);
  });
});

describe('bad grids name the task and the field', () => {
  it('ragged rows', async () => {
    const task = copy(base);
    task.test[0]!.input[2]!.push(5);
    const e = await loadError('ragged01', task);
    expect(e.taskId).toBe('ragged01');
    expect(e.path).toBe('test[0].input[2]');
    expect(e.message).toMatch(/ragged grid: row 2 has 5 cells, row 0 has 4/);
  });

  it('a missing train or test key is called missing', async () => {
    const { test, ...noTest } = copy(base);
    expect((await loadError('notest01', noTest)).message).toMatch(/"notest01": test: is missing/);
    const { train, ...noTrain } = copy(base);
    expect((await loadError('notrain1', noTrain)).message).toMatch(/"notrain1": train: is missing/);
    expect((await loadError('badtest1', { ...base, test: 3 })).message).toMatch(
      /test: test must be an array/,
    );
    expect([test.length, train.length]).toEqual([1, 3]);
  });

  it('a 31-wide grid', async () => {
    const task = copy(base);
    task.train[1]!.output = Array.from({ length: 3 }, () => new Array<number>(31).fill(1));
    const e = await loadError('wide0001', task);
    expect(e.taskId).toBe('wide0001');
    expect(e.path).toBe('train[1].output[0]');
    expect(e.message).toMatch(/at most 30 cells/);
  });

  for (const cell of [10, -1, 1.5]) {
    it(`a cell ${cell}`, async () => {
      const task = copy(base);
      task.train[2]!.input[1]![3] = cell;
      const e = await loadError('cells001', task);
      expect(e.taskId).toBe('cells001');
      expect(e.path).toBe('train[2].input[1][3]');
      expect(e.message).toMatch(/integer 0–9/);
    });
  }

  it('a task with no train pairs', async () => {
    const e = await loadError('notrain1', { train: [], test: base.test });
    expect(e.taskId).toBe('notrain1');
    expect(e.path).toBe('train');
    expect(e.message).toMatch(/at least 1 train pair/);
  });

  it('a bad cell in a single task file names the file name as the id', async () => {
    const task = copy(base);
    task.test[0]!.input[0]![0] = 12;
    const path = writeTmp('single01.json', JSON.stringify(task));
    await expect(loadTasks(path)).rejects.toMatchObject({
      taskId: 'single01',
      path: 'test[0].input[0][0]',
      source: path,
    });
  });

  it('a bad task file in a folder names the task and its file', async () => {
    const dir = join(tmp, 'folder-bad');
    mkdirSync(dir);
    const task = copy(base);
    task.train[0]!.output[5]![7] = -1;
    writeFileSync(join(dir, 'good0001.json'), JSON.stringify(base));
    writeFileSync(join(dir, 'bad00001.json'), JSON.stringify(task));
    await expect(loadTasks(dir)).rejects.toMatchObject({
      taskId: 'bad00001',
      path: 'train[0].output[5][7]',
      source: join(dir, 'bad00001.json'),
    });
  });
});

describe('duplicate ids', () => {
  it('the same id twice in a challenges file', async () => {
    const t = JSON.stringify(base);
    const path = writeTmp('dups.json', `{"aaaa0001": ${t}, "dup00001": ${t},\n "dup00001": ${t}}`);
    await expect(loadTasks(path)).rejects.toMatchObject({ name: 'ValidationError', taskId: 'dup00001' });
    const lenient = await loadTasks(path, { mode: 'lenient' });
    expect(Object.keys(lenient.tasks)).toEqual(['aaaa0001']);
    expect(lenient.errors.map((e) => (e as ValidationError).taskId)).toEqual(['dup00001']);
  });

  it('the same id twice (escaped differently) in a solutions file', async () => {
    const challenges = writeTmp('c.json', JSON.stringify({ ab: base }));
    const out = JSON.stringify([base.test[0]!.input]);
    const solutions = writeTmp('s.json', `{"ab": ${out}, "a\\u0062": ${out}}`);
    await expect(loadTasks(challenges, { solutions })).rejects.toMatchObject({
      taskId: 'ab',
      source: solutions,
    });
  });

  it('two files for one id in a folder (case variants of .json)', async () => {
    const dir = join(tmp, 'folder-dup');
    mkdirSync(dir);
    writeFileSync(join(dir, 'same0001.json'), JSON.stringify(base));
    writeFileSync(join(dir, 'same0001.JSON'), JSON.stringify(base));
    await expect(loadTasks(dir)).rejects.toMatchObject({ name: 'ValidationError', taskId: 'same0001' });
  });
});

describe('solutions that do not fit', () => {
  it('fewer outputs than test inputs → test[i].output of the first one missing', async () => {
    const task = copy(base);
    task.test.push({ input: task.test[0]!.input });
    const challenges = writeTmp('c.json', JSON.stringify({ twotest1: task }));
    const solutions = writeTmp('s.json', JSON.stringify({ twotest1: [base.test[0]!.output] }));
    await expect(loadTasks(challenges, { solutions })).rejects.toMatchObject({
      taskId: 'twotest1',
      path: 'test[1].output',
      source: solutions,
    });
  });

  it('a bad grid in a solutions file → ["id"][0][1]', async () => {
    const challenges = writeTmp('c.json', JSON.stringify({ badsol01: base }));
    const solutions = writeTmp(
      's.json',
      JSON.stringify({
        badsol01: [
          [
            [1, 2],
            [3, 'x'],
          ],
        ],
      }),
    );
    await expect(loadTasks(challenges, { solutions })).rejects.toMatchObject({
      taskId: 'badsol01',
      path: '["badsol01"][0][1][1]',
    });
  });
});

describe('unsafe ids', () => {
  for (const id of ['../x', 'a/b', '..', '']) {
    it(`taskFilePath rejects ${JSON.stringify(id)}`, () => {
      expect(() => taskFilePath(tmp, id)).toThrow(ValidationError);
      try {
        taskFilePath(tmp, id);
      } catch (e) {
        expect((e as ValidationError).taskId).toBe(id);
      }
    });
  }

  for (const id of ['../x', 'a/b']) {
    it(`split with id ${JSON.stringify(id)} writes nothing, inside or outside the folder`, async () => {
      const parent = join(tmp, `split-${counter++}`);
      const out = join(parent, 'out');
      mkdirSync(parent);
      const tasks: TaskSet = { good0001: base, [id]: base };
      await expect(splitTaskSet(tasks, out)).rejects.toMatchObject({ name: 'ValidationError', taskId: id });
      expect(readdirSync(parent)).toEqual([]);
      expect(existsSync(join(parent, 'x.json'))).toBe(false);
    });
  }

  it('split refuses ids equal but for case', async () => {
    const out = join(tmp, 'split-case');
    await expect(splitTaskSet({ abc: base, ABC: base }, out)).rejects.toMatchObject({ taskId: 'ABC' });
    expect(existsSync(out)).toBe(false);
  });

  it('a challenges file with a bad id names it', async () => {
    const e = await loadError('../evil', base);
    expect(e.taskId).toBe('../evil');
  });
});

describe('submissions and predictions', () => {
  it('checkSubmission: a missing task', () => {
    const { submission } = joinPredictions(sample, {});
    const [missing] = Object.keys(sample);
    delete submission[missing!];
    expect(() => checkSubmission(submission, sample)).toThrow(ValidationError);
    try {
      checkSubmission(submission, sample);
    } catch (e) {
      expect(e).toMatchObject({ taskId: missing, path: `["${missing}"]` });
      expect((e as ValidationError).message).toMatch(/missing from the submission/);
    }
  });

  it('checkSubmission: an extra task and a wrong count', () => {
    const { submission } = joinPredictions(sample, {});
    const ids = Object.keys(sample);
    submission.extra001 = submission[ids[0]!]!;
    submission[ids[1]!]!.push(submission[ids[1]!]![0]!);
    try {
      checkSubmission(submission, sample);
      expect.unreachable();
    } catch (e) {
      const v = e as ValidationError;
      expect(v.taskId).toBe(ids[1]);
      expect(v.issues.map((i) => i.path)).toEqual([`["${ids[1]}"]`, '["extra001"]']);
    }
  });

  it('loadSubmission: a bad attempt names ["id"][0].attempt_1[2]', async () => {
    const grid = [[1], [2], [3]];
    const bad = [[1], [2], [3, 4]];
    const path = writeTmp('sub.json', JSON.stringify({ sub00001: [{ attempt_1: bad, attempt_2: grid }] }));
    await expect(loadSubmission(path)).rejects.toMatchObject({
      taskId: 'sub00001',
      path: '["sub00001"][0].attempt_1[2]',
      source: path,
    });
  });

  it('joinPredictions: predictions for an unknown task, and too many entries', () => {
    const id = Object.keys(sample)[0]!;
    const entry = { attempt_1: [[1]], attempt_2: [[1]] };
    expect(() => joinPredictions(sample, { nothere1: [entry] })).toThrow(
      expect.objectContaining({ taskId: 'nothere1', path: '["nothere1"]' }),
    );
    expect(() => joinPredictions(sample, { [id]: [entry, entry] })).toThrow(
      expect.objectContaining({ taskId: id, path: `["${id}"][1]` }),
    );
    expect(() => joinPredictions(sample, { [id]: [{ attempt_1: [[1]] } as never] })).toThrow(
      expect.objectContaining({ taskId: id, path: `["${id}"][0].attempt_2` }),
    );
  });

  it('readPredictionFolder: a bad prediction file names the task and path', async () => {
    const path = writeTmp('pred0001.json', JSON.stringify([{ attempt_1: [[1, 10]], attempt_2: [[1]] }]));
    await expect(readPredictionFolder(join(path, '..'))).rejects.toMatchObject({
      taskId: 'pred0001',
      path: '[0].attempt_1[0][1]',
      source: path,
    });
  });
});

describe('lenient loading', () => {
  it('keeps every good task and returns exactly one error per bad task', async () => {
    const good = (await loadTasks(ARC1_EVALUATION, { limit: 10 })).tasks;
    const ragged = copy(base);
    ragged.train[0]!.input[1]!.pop();
    const hot = copy(base);
    hot.test[0]!.input[0]![0] = 10;
    const raw: Record<string, unknown> = { ...good };
    // Bad tasks between good ones, so order cannot hide a mistake.
    const keys = Object.keys(good);
    const mixed: Record<string, unknown> = {};
    keys.forEach((k, i) => {
      mixed[k] = raw[k];
      if (i === 2) mixed.badrag01 = ragged;
      if (i === 5) mixed.badhot01 = hot;
      if (i === 7) mixed.badnotr1 = { train: [], test: base.test };
    });
    const path = writeTmp('mixed.json', JSON.stringify(mixed));
    await expect(loadTasks(path)).rejects.toMatchObject({ taskId: 'badrag01' });
    const result = await loadTasks(path, { mode: 'lenient' });
    expect(result.tasks).toEqual(good);
    expect(result.errors).toHaveLength(3);
    expect(result.errors.map((e) => [(e as ValidationError).taskId, (e as ValidationError).path])).toEqual([
      ['badrag01', 'train[0].input[1]'],
      ['badhot01', 'test[0].input[0][0]'],
      ['badnotr1', 'train'],
    ]);
    for (const e of result.errors) expect(e.message).toContain(path);
    // Their test inputs, as far as they can be read (a run answers them with fallbacks).
    expect(result.leftOutTests).toEqual({
      badrag01: base.test.map((t) => t.input),
      badhot01: [null],
      badnotr1: base.test.map((t) => t.input),
    });
  });

  it('keeps the readable test inputs of bad tasks in every layout, and of tasks whose solutions do not match', async () => {
    const ragged = copy(base);
    ragged.train[0]!.input[1]!.pop();
    // A folder: a bad task, a file that is not JSON, a task with no test array.
    const dir = join(tmp, 'left-out-folder');
    mkdirSync(dir);
    writeFileSync(join(dir, 'good0001.json'), JSON.stringify(base));
    writeFileSync(join(dir, 'ragged01.json'), JSON.stringify(ragged));
    writeFileSync(join(dir, 'notjson1.json'), '{');
    writeFileSync(join(dir, 'notest01.json'), JSON.stringify({ train: base.train }));
    const folder = await loadTasks(dir, { mode: 'lenient' });
    expect(Object.keys(folder.tasks)).toEqual(['good0001']);
    expect(folder.errors).toHaveLength(3);
    expect(folder.leftOutTests).toEqual({ ragged01: base.test.map((t) => t.input) });
    // One task file.
    const single = await loadTasks(writeTmp('ragged02.json', JSON.stringify(ragged)), { mode: 'lenient' });
    expect(single.leftOutTests).toEqual({ ragged02: base.test.map((t) => t.input) });
    // Solutions with the wrong count of outputs: the task is left out, its inputs are all valid.
    const challenges = writeTmp('c.json', JSON.stringify({ good0001: base }));
    const solutions = writeTmp(
      's.json',
      JSON.stringify({ good0001: [base.test[0]!.input, base.test[0]!.input] }),
    );
    const merged = await loadTasks(challenges, { solutions, mode: 'lenient' });
    expect([Object.keys(merged.tasks), merged.leftOutTests]).toEqual([
      [],
      { good0001: base.test.map((t) => t.input) },
    ]);
    // An id that is not a valid file name cannot be answered.
    const badId = await loadTasks(writeTmp('c.json', JSON.stringify({ 'a/b': base })), { mode: 'lenient' });
    expect([badId.errors.length, badId.leftOutTests]).toEqual([1, {}]);
  });
});
