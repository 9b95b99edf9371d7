import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { joinCommand } from '../src/cli/commands/join.js';
import { splitCommand } from '../src/cli/commands/split.js';
import { readJsonFile } from '../src/data/fs.js';
import { loadSolutions, loadSubmission, loadTasks } from '../src/data/load.js';
import {
  checkSubmission,
  joinPredictions,
  type Predictions,
  readPredictionFolder,
  splitTaskSet,
  writeSubmission,
} from '../src/data/split.js';
import type { Solutions, Submission, TaskSet } from '../src/schemas.js';
import { KAGGLE, ROOT } from './helpers.js';

const EVAL_CHALLENGES = join(KAGGLE, 'arc-agi_evaluation_challenges.json');
const EVAL_SOLUTIONS = join(KAGGLE, 'arc-agi_evaluation_solutions.json');
const TEST_CHALLENGES = join(KAGGLE, 'arc-agi_test_challenges.json');
const SAMPLE = join(ROOT, 'data/sample');

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'arc-ttft-split-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('split then join on the Kaggle evaluation set', () => {
  let evalSet: TaskSet;
  let sols: Solutions;
  beforeAll(async () => {
    evalSet = (await loadTasks(EVAL_CHALLENGES, { solutions: EVAL_SOLUTIONS })).tasks;
    sols = await loadSolutions(EVAL_SOLUTIONS);
  });

  it('splits into one file per task that loads back as the same set', async () => {
    const out = join(tmp, 'eval-split');
    const paths = await splitTaskSet(evalSet, out);
    expect(paths).toHaveLength(400);
    expect(readdirSync(out).sort()).toEqual(
      Object.keys(evalSet)
        .map((id) => `${id}.json`)
        .sort(),
    );
    const back = await loadTasks(out);
    expect(back.format).toBe('folder');
    expect(back.tasks).toEqual(evalSet);
  });

  it('can leave the test outputs out', async () => {
    const out = join(tmp, 'eval-nosol');
    const id = Object.keys(evalSet)[0]!;
    await splitTaskSet({ [id]: evalSet[id]! }, out, { includeSolutions: false });
    const file = (await readJsonFile(join(out, `${id}.json`))) as { test: object[] };
    expect(file.test.every((pair) => !('output' in pair))).toBe(true);
  });

  it('joins the solutions as both attempts into a submission Kaggle would accept', async () => {
    const predictions: Predictions = {};
    for (const [id, outputs] of Object.entries(sols)) {
      predictions[id] = outputs.map((grid) => ({ attempt_1: grid, attempt_2: grid }));
    }
    const { submission, filled } = joinPredictions(evalSet, predictions);
    expect(filled).toEqual([]);
    checkSubmission(submission, evalSet);
    for (const [id, entries] of Object.entries(submission)) {
      expect(entries.map((e) => e.attempt_1)).toEqual(sols[id]);
      expect(entries.map((e) => e.attempt_2)).toEqual(sols[id]);
    }
    const path = join(tmp, 'eval-submission.json');
    await writeSubmission(path, submission);
    expect(await loadSubmission(path)).toEqual(submission);
  });

  it('fills gaps by the fallback and reports them', () => {
    const [a, b] = Object.keys(evalSet) as [string, string];
    const solved = sols[a]!.map((grid) => ({ attempt_1: grid, attempt_2: grid }));
    const { submission, filled } = joinPredictions(
      { [a]: evalSet[a]!, [b]: evalSet[b]! },
      { [a]: solved, [b]: [null] },
      { fallback: 'zeros' },
    );
    expect(submission[a]).toEqual(solved);
    expect(filled[0]).toEqual({ taskId: b, testIndex: 0 });
    expect(filled).toHaveLength(evalSet[b]!.test.length);
    expect(submission[b]![0]).toEqual({ attempt_1: [[0]], attempt_2: [[0]] });
  });
});

describe('joinPredictions with no predictions', () => {
  it('matches sample_submission.json: every test task and test index, fallback = the test input', async () => {
    const tasks = (await loadTasks(TEST_CHALLENGES)).tasks;
    const sample = (await readJsonFile(join(KAGGLE, 'sample_submission.json'))) as Submission;
    const { submission, filled } = joinPredictions(tasks, {});
    expect(Object.keys(submission)).toEqual(Object.keys(sample));
    for (const [id, entries] of Object.entries(sample)) expect(submission[id]).toHaveLength(entries.length);
    const total = Object.values(sample).reduce((n, e) => n + e.length, 0);
    expect(filled).toHaveLength(total);
    for (const [id, task] of Object.entries(tasks)) {
      task.test.forEach((pair, i) => {
        expect(submission[id]![i]).toEqual({ attempt_1: pair.input, attempt_2: pair.input });
        // Copies, so that editing the submission cannot corrupt the tasks.
        expect(submission[id]![i]!.attempt_1).not.toBe(pair.input);
      });
    }
    checkSubmission(submission, tasks);
    checkSubmission(sample, tasks);
  });
});

describe('readPredictionFolder', () => {
  it('reads <id>.json prediction files, null marking a missing entry', async () => {
    const dir = join(tmp, 'preds');
    mkdirSync(dir);
    const grid = [[1, 2]];
    writeFileSync(join(dir, 'abc.json'), JSON.stringify([{ attempt_1: grid, attempt_2: grid }, null]));
    writeFileSync(join(dir, 'notes.txt'), 'ignored');
    // macOS's companion files on non-Apple disks (binary, not JSON): hidden files are no task files
    writeFileSync(join(dir, '._abc.json'), Buffer.from([0, 5, 22, 7]));
    expect(await readPredictionFolder(dir)).toEqual({ abc: [{ attempt_1: grid, attempt_2: grid }, null] });
    writeFileSync(
      join(dir, 'abc.json'),
      JSON.stringify({ train: [{ input: grid, output: grid }], test: [{ input: grid }] }),
    );
    expect(Object.keys((await loadTasks(dir)).tasks)).toEqual(['abc']);
  });
});

describe('CLI split and join', () => {
  it('split writes the sample tasks; join writes a submission and reports the fallback count', async () => {
    const out = join(tmp, 'cli-split');
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await splitCommand().parseAsync(
        [join(SAMPLE, 'challenges.json'), '--out', out, '--solutions', join(SAMPLE, 'solutions.json')],
        { from: 'user' },
      );
      expect(readdirSync(out)).toHaveLength(6);
      expect(String(stdout.mock.calls.at(-1)?.[0])).toContain('wrote 6 task files');

      // Predictions for one task only: the other five are filled from their test inputs.
      const preds = join(tmp, 'cli-preds');
      mkdirSync(preds);
      const sols = await loadSolutions(join(SAMPLE, 'solutions.json'));
      const [id, outputs] = Object.entries(sols)[0]!;
      writeFileSync(
        join(preds, `${id}.json`),
        JSON.stringify(outputs.map((g) => ({ attempt_1: g, attempt_2: g }))),
      );
      const subPath = join(tmp, 'cli-submission.json');
      await joinCommand().parseAsync(['--tasks', out, '--predictions', preds, '--out', subPath], {
        from: 'user',
      });
      expect(String(stdout.mock.calls.at(-1)?.[0])).toContain('5 entries (in 5 tasks) filled by fallback');
    } finally {
      stdout.mockRestore();
    }
    const tasks = (await loadTasks(out)).tasks;
    const submission = await loadSubmission(join(tmp, 'cli-submission.json'));
    checkSubmission(submission, tasks);
    expect(process.exitCode ?? 0).toBe(0);
  });

  it('split writes every task it can read and lists each bad one', async () => {
    const sample = (await loadTasks(join(SAMPLE, 'challenges.json'))).tasks;
    const [a, b] = Object.keys(sample) as [string, string];
    const broken = JSON.parse(JSON.stringify(sample)) as Record<string, unknown>;
    (broken[a] as { train: { input: unknown }[] }).train[0]!.input = [[1, 2], [3]];
    broken[b] = null;
    const challenges = join(tmp, 'split-mixed.json');
    writeFileSync(challenges, JSON.stringify(broken));
    const out = join(tmp, 'split-mixed');
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await splitCommand().parseAsync([challenges, '--out', out], { from: 'user' });
      expect(String(stdout.mock.calls.at(-1)?.[0])).toBe(
        `wrote 4 task files to ${out} (0 with test outputs); 2 invalid task(s) not written, on stderr\n`,
      );
      expect(stderr.mock.calls.map((c) => String(c[0]))).toEqual([
        `invalid task: ${challenges}: task "${a}": train[0].input[1]: ragged grid: row 1 has 1 cells, row 0 has 2\n`,
        `invalid task: ${challenges}: task "${b}": must be a task {train, test}, not null\n`,
      ]);
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
    }
    expect(readdirSync(out).sort()).toEqual(
      Object.keys(sample)
        .filter((id) => id !== a && id !== b)
        .map((id) => `${id}.json`)
        .sort(),
    );
    expect(process.exitCode ?? 0).toBe(0);
  });

  it('join answers every task it can read, whatever else is bad, and lists each problem', async () => {
    const sample = (await loadTasks(join(SAMPLE, 'challenges.json'))).tasks;
    const [a, b, c] = Object.keys(sample) as [string, string, string];
    // Challenges with a task whose train grid is bad (its test input is fine).
    const broken = JSON.parse(JSON.stringify(sample)) as Record<string, { train: { input: unknown }[] }>;
    broken[b]!.train[0]!.input = [[1, 2], [3]];
    const challenges = join(tmp, 'join-mixed.json');
    writeFileSync(challenges, JSON.stringify(broken));
    // Predictions: one good file, one not JSON, one for an unknown task, one with too many entries.
    const preds = join(tmp, 'join-mixed-preds');
    mkdirSync(preds);
    const g = [[7]];
    writeFileSync(join(preds, `${a}.json`), JSON.stringify([{ attempt_1: g, attempt_2: g }]));
    writeFileSync(join(preds, `${b}.json`), JSON.stringify([{ attempt_1: g, attempt_2: g }]));
    writeFileSync(join(preds, `${c}.json`), '[{"attempt_1": ');
    writeFileSync(join(preds, 'unknown1.json'), JSON.stringify([{ attempt_1: g, attempt_2: g }]));
    const d = Object.keys(sample)[3]!;
    writeFileSync(join(preds, `${d}.json`), JSON.stringify([null, null, null, null, null]));
    const out = join(tmp, 'join-mixed-submission.json');
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await joinCommand().parseAsync(['--tasks', challenges, '--predictions', preds, '--out', out], {
        from: 'user',
      });
      expect(process.exitCode ?? 0).toBe(0);
      const problems = stderr.mock.calls.map((call) => String(call[0]));
      expect(problems).toEqual([
        expect.stringMatching(new RegExp(`^invalid task: .*"${b}": train\\[0\\]\\.input\\[1\\]`)),
        expect.stringMatching(new RegExp(`^bad prediction file: .*${c}\\.json: invalid JSON`)),
        expect.stringContaining(`task "${d}": 5 entries for 1 test input(s)`),
        expect.stringContaining('not in the tasks, left out: unknown1'),
      ]);
      expect(String(stdout.mock.calls.at(-1)?.[0])).toContain('4 problem(s), on stderr');
      // Every task is answered: the good predictions (also the invalid task's), fallbacks for the rest.
      const submission = await loadSubmission(out);
      checkSubmission(submission, sample);
      expect(submission[a]![0]!.attempt_1).toEqual(g);
      expect(submission[b]![0]!.attempt_1).toEqual(g);
      expect(submission[c]![0]!.attempt_1).toEqual(sample[c]!.test[0]!.input);
      // --out may not replace the tasks: the file itself, a link to it, a file in a tasks folder.
      symlinkSync(challenges, join(tmp, 'join-link.json'));
      const taskFolder = join(tmp, 'cli-split'); // the folder the first CLI test wrote
      for (const [tasksArg, outArg, what] of [
        [challenges, challenges, 'the tasks file'],
        [challenges, join(tmp, 'join-link.json'), 'the tasks file'],
        [taskFolder, join(taskFolder, readdirSync(taskFolder)[0]!), 'a file in the tasks folder'],
      ] as const) {
        process.exitCode = 0;
        await joinCommand().parseAsync(['--tasks', tasksArg, '--predictions', preds, '--out', outArg], {
          from: 'user',
        });
        expect(process.exitCode).toBe(1);
        expect(String(stderr.mock.calls.at(-1)?.[0])).toContain(`--out would replace ${what}`);
      }
      expect((await loadTasks(challenges, { mode: 'lenient' })).errors).toHaveLength(1);
      expect(readdirSync(taskFolder)).toHaveLength(6);
    } finally {
      stdout.mockRestore();
      stderr.mockRestore();
      process.exitCode = 0;
    }
  });

  it('prints a typed error and sets exit code 1 on bad input', async () => {
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await splitCommand().parseAsync([join(tmp, 'missing.json'), '--out', join(tmp, 'x')], { from: 'user' });
      expect(process.exitCode).toBe(1);
      expect(String(stderr.mock.calls[0]?.[0])).toMatch(/missing\.json: file not found/);
    } finally {
      stderr.mockRestore();
      process.exitCode = 0;
    }
  });
});
