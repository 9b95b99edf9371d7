import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeDirs, readJsonFile, topLevelKeys, writeJsonAtomic } from '../src/data/fs.js';
import {
  type LoadResult,
  loadSolutions,
  loadSubmission,
  loadTaskSetFromObject,
  loadTasks,
  mergeSolutions,
} from '../src/data/load.js';
import { ValidationError } from '../src/errors.js';
import { ARC1_EVALUATION, ARC1_TRAINING, KAGGLE, ROOT } from './helpers.js';

const challenges = (name: string) => join(KAGGLE, `arc-agi_${name}_challenges.json`);
const solutions = (name: string) => join(KAGGLE, `arc-agi_${name}_solutions.json`);
const SAMPLE = join(ROOT, 'data/sample');

function countTests(result: LoadResult): { tests: number; withOutput: number } {
  let tests = 0;
  let withOutput = 0;
  for (const task of Object.values(result.tasks)) {
    for (const pair of task.test) {
      tests++;
      if (pair.output !== undefined) withOutput++;
    }
  }
  return { tests, withOutput };
}

describe('loadTasks on the real ARC data', () => {
  let arc1Eval: LoadResult;
  let kaggleEval: LoadResult;

  beforeAll(async () => {
    [arc1Eval, kaggleEval] = await Promise.all([
      loadTasks(ARC1_EVALUATION),
      loadTasks(challenges('evaluation'), { solutions: solutions('evaluation') }),
    ]);
  });

  it('loads the 400 ARC-AGI-1 training and 400 evaluation task files as folders', async () => {
    const training = await loadTasks(ARC1_TRAINING);
    expect(training.format).toBe('folder');
    expect(Object.keys(training.tasks)).toHaveLength(400);
    expect(arc1Eval.format).toBe('folder');
    expect(Object.keys(arc1Eval.tasks)).toHaveLength(400);
    expect(arc1Eval.errors).toEqual([]);
    // Task files carry their test outputs.
    for (const result of [training, arc1Eval]) {
      const { tests, withOutput } = countTests(result);
      expect(withOutput).toBe(tests);
    }
    expect(Object.keys(training.tasks)).toContain('007bbfb7');
  });

  it('merges the Kaggle 2024 challenges with their solutions: every test output present', async () => {
    const training = await loadTasks(challenges('training'), { solutions: solutions('training') });
    for (const result of [training, kaggleEval]) {
      expect(result.format).toBe('challenges');
      expect(Object.keys(result.tasks)).toHaveLength(400);
      const { tests, withOutput } = countTests(result);
      expect(tests).toBeGreaterThanOrEqual(400);
      expect(withOutput).toBe(tests);
    }
  });

  it('names a Kaggle file given for another kind once, instead of failing each task', async () => {
    await expect(loadTasks(solutions('evaluation'))).rejects.toThrow(
      /this looks like a solutions file \(each id maps to a list of output grids\), not a challenges file/,
    );
    await expect(loadSubmission(solutions('evaluation'))).rejects.toThrow(/looks like a solutions file/);
    await expect(loadSolutions(join(KAGGLE, 'sample_submission.json'))).rejects.toThrow(
      /looks like a submission file .*, not a solutions file/,
    );
    await expect(
      loadTasks(challenges('evaluation'), { solutions: challenges('evaluation') }),
    ).rejects.toThrow(/looks like a challenges file/);
  });

  it('refuses the solutions of another set instead of merging nothing', async () => {
    const wrong = loadTasks(challenges('evaluation'), { solutions: solutions('training'), limit: 3 });
    await expect(wrong).rejects.toThrow(/has none of the ids of the tasks \(the first: "00576224"\)/);
    expect(() => mergeSolutions(kaggleEval.tasks, { '007bbfb7': [[[1]]] })).toThrow(ValidationError);
    // Solutions for some of the tasks, or none at all, are fine.
    const a = { train: [], test: [{ input: [[1]] }] };
    expect(mergeSolutions({ a }, {})).toEqual({ a });
    expect(mergeSolutions({ a, b: a }, { b: [[[2]]] }).b!.test[0]!.output).toEqual([[2]]);
  });

  it('gives the same tasks for the Kaggle evaluation file + solutions as for the ARC-AGI-1 folder', () => {
    expect(kaggleEval.tasks).toEqual(arc1Eval.tasks);
  });

  it('loads the 100 test challenges without outputs', async () => {
    const test = await loadTasks(challenges('test'));
    expect(Object.keys(test.tasks)).toHaveLength(100);
    expect(countTests(test).withOutput).toBe(0);
  });

  it('loads a single task file, its id taken from the file name', async () => {
    const result = await loadTasks(join(ARC1_EVALUATION, '0c786b71.json'));
    expect(result.format).toBe('task');
    expect(Object.keys(result.tasks)).toEqual(['0c786b71']);
    expect(result.tasks['0c786b71']).toEqual(arc1Eval.tasks['0c786b71']);
  });

  it('selects ids with only and limit, keeping source order', async () => {
    const ids = Object.keys(kaggleEval.tasks);
    const limited = await loadTasks(challenges('evaluation'), { limit: 5 });
    // The file's first five, as other tools count them (the parsed object lists its 13 all-digit ids first).
    const fileOrder = topLevelKeys(readFileSync(challenges('evaluation'), 'utf8')).keys;
    expect(fileOrder[0]).toBe('00576224');
    expect(ids[0]).toBe('13713586');
    expect(Object.keys(limited.tasks)).toEqual(fileOrder.slice(0, 5));
    const wanted = [ids[10]!, ids[3]!, ids[7]!];
    const only = await loadTasks(ARC1_EVALUATION, { only: wanted, limit: 2 });
    expect(Object.keys(only.tasks)).toEqual([ids[3], ids[7]]);
    await expect(loadTasks(ARC1_EVALUATION, { only: [`${ids[3]},${ids[7]}`] })).rejects.toThrow(
      /not in the source \(give several ids as separate values/,
    );
    await expect(loadTasks(ARC1_EVALUATION, { only: ['00000000'] })).rejects.toMatchObject({
      name: 'ValidationError',
      taskId: '00000000',
    });
  });

  it('loads the bundled sample: 6 small evaluation tasks with solutions', async () => {
    const sample = await loadTasks(join(SAMPLE, 'challenges.json'), {
      solutions: join(SAMPLE, 'solutions.json'),
    });
    const ids = Object.keys(sample.tasks);
    expect(ids).toHaveLength(6);
    for (const id of ids) {
      const task = sample.tasks[id]!;
      expect(task.train.length).toBeGreaterThanOrEqual(3);
      expect(task.train.length).toBeLessThanOrEqual(4);
      expect(task.test).toHaveLength(1);
      for (const pair of [...task.train, ...task.test]) {
        for (const grid of [pair.input, pair.output!]) {
          expect(grid.length).toBeLessThanOrEqual(10);
          expect(grid[0]!.length).toBeLessThanOrEqual(10);
        }
      }
      // Copied unchanged from ARC-AGI-1 evaluation.
      expect(task).toEqual(arc1Eval.tasks[id]);
    }
  });

  it('loadTaskSetFromObject and mergeSolutions validate in-memory objects', async () => {
    const raw = await readJsonFile(join(SAMPLE, 'challenges.json'));
    const tasks = loadTaskSetFromObject(raw, { source: 'sample' });
    expect(Object.keys(tasks)).toHaveLength(6);
    const sols = await loadSolutions(join(SAMPLE, 'solutions.json'));
    const merged = mergeSolutions(tasks, sols);
    for (const [id, task] of Object.entries(merged)) expect(task.test[0]!.output).toEqual(sols[id]![0]);
    // The input is not mutated.
    expect(Object.values(tasks).every((t) => t.test[0]!.output === undefined)).toBe(true);
    expect(() => loadTaskSetFromObject([1, 2], { source: 'arr' })).toThrow(ValidationError);
  });

  it('loadSolutions and loadSubmission read the real Kaggle files', async () => {
    const sols = await loadSolutions(solutions('evaluation'));
    expect(Object.keys(sols)).toHaveLength(400);
    const sample = await loadSubmission(join(KAGGLE, 'sample_submission.json'));
    expect(Object.keys(sample)).toHaveLength(100);
    for (const entries of Object.values(sample)) {
      for (const e of entries) expect(Object.keys(e).sort()).toEqual(['attempt_1', 'attempt_2']);
    }
  });
});

describe('writeJsonAtomic', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'arc-ttft-fs-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes into new parent folders, replaces the target and leaves no temp files', async () => {
    const target = join(dir, 'a/b/out.json');
    await writeJsonAtomic(target, { x: [[1, 2]] });
    writeFileSync(join(dir, 'a/b/other.txt'), 'keep');
    await Promise.all(Array.from({ length: 8 }, (_, i) => writeJsonAtomic(target, { i })));
    expect(readdirSync(join(dir, 'a/b')).sort()).toEqual(['other.txt', 'out.json']);
    // Whatever write won, the file is one complete value.
    const value = JSON.parse(await readFile(target, 'utf8')) as { i: number };
    expect(value.i).toBeGreaterThanOrEqual(0);
    expect(value.i).toBeLessThan(8);
  });

  it('pretty-prints grids one row per line', async () => {
    const target = join(dir, 'pretty.json');
    await writeJsonAtomic(
      target,
      {
        train: [
          {
            input: [
              [1, 2],
              [3, 4],
            ],
          },
        ],
      },
      { pretty: true },
    );
    const text = await readFile(target, 'utf8');
    expect(text).toContain('\n        [1,2],\n        [3,4]\n');
    expect(JSON.parse(text)).toEqual({
      train: [
        {
          input: [
            [1, 2],
            [3, 4],
          ],
        },
      ],
    });
  });

  it("fails at once where a parent folder refuses new entries (Node's recursive mkdir spins on /proc/x)", async () => {
    const started = performance.now();
    await expect(writeJsonAtomic('/proc/arc-ttft-no/such/out.json', 1)).rejects.toMatchObject({
      name: 'FileError',
    });
    expect(performance.now() - started).toBeLessThan(2000);
    // A file where a folder should be: named, not retried.
    writeFileSync(join(dir, 'plain'), 'x');
    await expect(writeJsonAtomic(join(dir, 'plain/sub/out.json'), 1)).rejects.toThrow(/not a folder|file/i);
    await expect(makeDirs(join(dir, 'plain'))).rejects.toMatchObject({ code: 'ENOTDIR' });
    // Many writers making the same new folders at once all succeed.
    await Promise.all(Array.from({ length: 8 }, () => makeDirs(join(dir, 'race/a/b'))));
    expect(readdirSync(join(dir, 'race/a'))).toEqual(['b']);
  });

  it('fails with a FileError and no temp file when the target is a folder', async () => {
    const target = join(dir, 'isdir');
    await writeJsonAtomic(join(target, 'inner.json'), 1);
    await expect(writeJsonAtomic(target, { a: 1 })).rejects.toMatchObject({
      name: 'FileError',
      path: target,
    });
    expect(readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });

  it('writes through a symbolic link (also a chain, or one to a file not there yet) instead of replacing it', async () => {
    mkdirSync(join(dir, 'real'));
    writeFileSync(join(dir, 'real', 'sub.json'), '{}');
    symlinkSync('real/sub.json', join(dir, 'link.json'));
    symlinkSync(join(dir, 'link.json'), join(dir, 'link2.json'));
    symlinkSync('real/new.json', join(dir, 'dangling.json'));
    await writeJsonAtomic(join(dir, 'link2.json'), { a: 1 });
    await writeJsonAtomic(join(dir, 'dangling.json'), { b: 2 });
    expect(lstatSync(join(dir, 'link.json')).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(dir, 'link2.json')).isSymbolicLink()).toBe(true);
    expect(lstatSync(join(dir, 'dangling.json')).isSymbolicLink()).toBe(true);
    expect(await readJsonFile(join(dir, 'real', 'sub.json'))).toEqual({ a: 1 });
    expect(await readJsonFile(join(dir, 'real', 'new.json'))).toEqual({ b: 2 });
    // A relative link in a folder reached through a linked folder counts from the real folder.
    mkdirSync(join(dir, 'b', 'c'), { recursive: true });
    symlinkSync(join(dir, 'b', 'c'), join(dir, 'linkdir'));
    symlinkSync('../x.json', join(dir, 'b', 'c', 'out.json'));
    await writeJsonAtomic(join(dir, 'linkdir', 'out.json'), { c: 3 });
    expect(await readJsonFile(join(dir, 'b', 'x.json'))).toEqual({ c: 3 });
    symlinkSync(join(dir, 'loop-b.json'), join(dir, 'loop-a.json'));
    symlinkSync(join(dir, 'loop-a.json'), join(dir, 'loop-b.json'));
    await expect(writeJsonAtomic(join(dir, 'loop-a.json'), 1)).rejects.toMatchObject({ name: 'FileError' });
  });

  it('says what is wrong with a path in words', async () => {
    writeFileSync(join(dir, 'plain-file'), 'x');
    // A file where a folder should be created.
    await expect(writeJsonAtomic(join(dir, 'plain-file', 'x.json'), 1)).rejects.toThrow(/not a folder/);
    await expect(loadTasks(join(dir, 'no-such-folder'))).rejects.toThrow(/not found/);
  });
});
