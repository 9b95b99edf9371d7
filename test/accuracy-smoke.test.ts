/**
 * Smoke version of the accuracy study (bench/accuracy): the task list is what its rule gives, and the
 * study's command runs the three modes on 2 real ARC-AGI-1 evaluation tasks with a tiny random model and
 * a few steps, writing a results JSON and Markdown whose numbers are those src/score.ts gives for the
 * written journals and submissions. Never touches docs/results.md.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { findings, signTest } from '../bench/accuracy/render.js';
import { accuracyCommand, main } from '../bench/accuracy/run.js';
import { MODES, type ModeResult, type StudyResults } from '../bench/accuracy/study.js';
import { buildTaskList, formatTaskList, readTaskList, TASKS_FILE } from '../bench/accuracy/tasks.js';
import { loadTasks } from '../src/data/load.js';
import type { Grid, Solutions, Submission } from '../src/schemas.js';
import { scorePredictions, scoreSubmission, type TaskPredictions } from '../src/score.js';
import { makeTinyModel } from '../src/ttft/engine.js';
import type { TaskRecord } from '../src/ttft/records.js';
import { ARC1_EVALUATION, HAS_SHARED_DATA, ROOT, runCommandInProcess } from './helpers.js';

const PYTHON = process.env.ARC_TTFT_PYTHON;
const DOC = join(ROOT, 'docs/results.md');

let dir: string;
let model: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'arc-ttft-accuracy-'));
  if (HAS_SHARED_DATA) {
    model = (await makeTinyModel(join(dir, 'tiny'), PYTHON !== undefined ? { pythonBin: PYTHON } : {})).path;
  }
}, 120_000);

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The journal's task records, read independently of the study's own reader. */
function records(runDir: string): TaskRecord[] {
  return readFileSync(join(runDir, 'results.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l))
    .filter((v) => v.type === 'task');
}

/** arc24's predictions: each view's grid once per vote, one null per unparsable view. */
function predictions(recs: readonly TaskRecord[]): TaskPredictions {
  return Object.fromEntries(
    recs.map((r) => [
      r.taskId,
      r.attempts.map((attempts, i) => {
        const t = r.predict?.tests[i];
        const candidates: (Grid | null)[] = [
          ...(t?.candidates ?? []).flatMap((c) => Array.from({ length: c.votes }, () => c.grid)),
          ...Array.from({ length: t?.failures ?? 0 }, () => null),
        ];
        return candidates.length > 0 ? { attempts, candidates } : { attempts };
      }),
    ]),
  );
}

describe.skipIf(!HAS_SHARED_DATA)('accuracy study', () => {
  it('keeps a task list that its rule regenerates: ≥ 50 distinct evaluation tasks that fit with every pair', async () => {
    const list = readTaskList();
    const fresh = await buildTaskList();
    expect(list).toEqual(fresh);
    expect(readFileSync(TASKS_FILE, 'utf8')).toBe(formatTaskList(fresh));
    const ids = list.tasks.map((t) => t.id);
    expect(ids.length).toBeGreaterThanOrEqual(50);
    expect(new Set(ids).size).toBe(ids.length);
    expect(list.tasks.every((t) => t.tokens <= list.maxSeqLen)).toBe(true);
    const tokens = list.tasks.map((t) => t.tokens);
    expect(tokens).toEqual([...tokens].sort((a, b) => a - b));
    for (const id of ids) expect(existsSync(join(ARC1_EVALUATION, `${id}.json`))).toBe(true);
  });

  it('runs the three modes and writes results whose metrics are src/score.ts of the written files', async () => {
    const out = join(dir, 'out');
    const md = join(dir, 'report', 'results.md');
    const docBefore = existsSync(DOC) ? statSync(DOC).mtimeMs : undefined;
    const argv = [
      ...['--limit', '2', '--steps', '3', '--augmentations', '2', '--rank', '4', '--lr', '0.002'],
      ...['--model', model, '--out', out, '--results', md, '--threads', '1'],
      ...(PYTHON !== undefined ? ['--python', PYTHON] : []),
    ];
    let results: StudyResults | undefined;
    const run = await runCommandInProcess(
      () =>
        accuracyCommand(argv, (r) => {
          results = r;
        }),
      argv,
    );
    expect(run.stderr).not.toContain('error:');
    expect(run.exitCode).toBe(0);
    expect(results).toBeDefined();
    const r = results!;

    // Every mode ran on the same two tasks; the fine-tuning modes trained the same total.
    const list = readTaskList();
    const ids = list.tasks.slice(0, 2).map((t) => t.id);
    expect(r.taskList.ids).toEqual(ids);
    expect(r.modes.map((m) => m.mode)).toEqual([...MODES]);
    const steps = Object.fromEntries(r.modes.map((m) => [m.mode, m.trainSteps]));
    expect(steps).toEqual({ 'single-task': 6, 'whole-set': 6, none: 0 });

    // The numbers are src/score.ts of what the runs wrote.
    const { tasks } = await loadTasks(ARC1_EVALUATION, { only: ids });
    const solutions: Solutions = Object.fromEntries(
      ids.map((id) => [id, tasks[id]!.test.map((t) => t.output!)]),
    );
    for (const m of r.modes) {
      const runDir = resolve(ROOT, m.dir);
      const recs = records(runDir);
      expect(recs.map((x) => x.taskId).sort()).toEqual([...ids].sort());
      expect(m.statusCounts.done).toBe(2);
      const report = scorePredictions(predictions(recs), solutions);
      expect(m.metrics).toEqual(report.metrics);
      const submission = JSON.parse(readFileSync(join(runDir, 'submission.json'), 'utf8')) as Submission;
      expect(m.kaggleScore).toBe(scoreSubmission(submission, solutions).score);
      expect(m.metrics.vote2).toBe(m.kaggleScore);
      // Two views per test input: arc24's accuracy counts every one of them.
      for (const x of recs) expect(x.predict?.tests.every((t) => t.views === 2)).toBe(true);
    }

    // Options recorded, with the defaults filled in.
    expect(r.options).toMatchObject({ steps: 3, augmentations: 2, rank: 4, lr: 0.002, limit: 2, seed: 0 });
    expect(r.runOptions).toMatchObject({
      seed: 0,
      train: { steps: 3, lr: 0.002, augmentationsPerPair: 32, maxSamples: 250 },
      predict: { augmentations: 2 },
      engine: { lora: { r: 4, alpha: 8 } },
    });
    expect(r.machine.cores).toBeGreaterThan(0);
    expect(r.machine.torch).toMatch(/\d+\.\d+/);
    expect(r.model.info.nParams).toBeGreaterThan(0);

    // The JSON beside the Markdown is the results; the Markdown holds the table, the reading and the options.
    expect(JSON.parse(readFileSync(join(dir, 'report', 'results.json'), 'utf8'))).toEqual(
      JSON.parse(JSON.stringify(r)),
    );
    const text = readFileSync(md, 'utf8');
    for (const m of r.modes) {
      const row = text.split('\n').find((l) => l.startsWith(`| ${m.mode} |`));
      expect(row).toContain(
        `| ${(100 * m.metrics.vote2).toFixed(1)}% | ${(100 * m.metrics.accuracy).toFixed(1)}% |`,
      );
    }
    expect(text).toContain('## What it shows');
    expect(text).toContain('vote_2 (Kaggle pass@2) on 2 tasks');
    expect(text).toContain('## What was tried');
    expect(text).toContain('"steps": 3');
    expect(text).toContain(r.machine.cpu);
    expect(text).toContain(list.rule);
    // The smoke run never writes the real results.
    expect(existsSync(DOC) ? statSync(DOC).mtimeMs : undefined).toBe(docBefore);

    // Re-running resumes from the journals: nothing is left to run.
    const dry = await runCommandInProcess(() => accuracyCommand(), [...argv, '--dry-run']);
    expect(dry.exitCode).toBe(0);
    expect(dry.stdout).toContain('left to run: single-task 0, whole-set 0, none 0');
  }, 120_000);

  it('rejects bad flags with exit code 2 and bad options with exit code 1', async () => {
    const previous = process.exitCode;
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      await main(['--modes', 'single-task,nope', '--dry-run']);
      expect(process.exitCode).toBe(2);
      expect(String(err.mock.calls[0]?.[0])).toContain('unknown mode(s) nope');
    } finally {
      err.mockRestore();
      process.exitCode = previous;
    }
    const bad = await runCommandInProcess(() => accuracyCommand(), ['--steps', '0', '--dry-run']);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toContain('steps');
  });
});

/** A study result with only what the reading looks at: per-task vote_2 of each mode over `n` tasks. */
function synthetic(vote2: Record<'single-task' | 'whole-set' | 'none', number[]>): StudyResults {
  const n = vote2['single-task'].length;
  const ids = Array.from({ length: n }, (_, i) => `t${i}`);
  const modes = MODES.map((mode): ModeResult => {
    const v = vote2[mode];
    const mean = v.reduce((a, b) => a + b, 0) / n;
    return {
      mode,
      dir: mode,
      tasks: n,
      statusCounts: { done: n, too_long: 0, failed: 0, timed_out: 0, invalid: 0 },
      metrics: {
        vote2: mean,
        accuracy: mean,
        passN: mean,
        correctSize: mean,
        correctPixels: 0,
        maxCorrectPixels: 0,
        anyCorrectSize: 0,
        unanswered: 0,
      },
      kaggleScore: mean,
      solved: ids.filter((_, i) => v[i] === 1),
      trainSteps: mode === 'none' ? 0 : 10 * n,
      trainTokens: null,
      trainSeconds: 0,
      predictSeconds: 0,
      seconds: 0,
      resumed: 0,
      perTask: Object.fromEntries(
        ids.map((id, i) => [
          id,
          { status: 'done', vote2: v[i]!, accuracy: 0, passN: 0, correctSize: 0, steps: 0 },
        ]),
      ),
    };
  });
  return {
    modes,
    taskList: { ids, rule: '', file: '', tokens: {} },
    model: { info: { embeddedStandIn: false } },
    options: { steps: 10 },
  } as unknown as StudyResults;
}

describe('the reading of the numbers', () => {
  it('computes the two-sided exact sign test', () => {
    expect(signTest(0, 0)).toBe(1);
    expect(signTest(5, 0)).toBeCloseTo(2 / 32, 12);
    expect(signTest(3, 3)).toBe(1);
    expect(signTest(10, 1)).toBeCloseTo((2 * 12) / 2048, 12);
  });

  it('says when single-task TTFT beats the others, and whether by more than chance', () => {
    const ones = (k: number, n: number) => Array.from({ length: n }, (_, i) => (i < k ? 1 : 0));
    const clear = findings(
      synthetic({ 'single-task': ones(12, 20), 'whole-set': ones(2, 20), none: ones(0, 20) }),
    );
    expect(clear.join(' ')).toContain('Best on vote_2: single-task.');
    expect(clear.join(' ')).toContain('beats every other mode here, and by more than chance');
    const slim = findings(
      synthetic({ 'single-task': ones(2, 20), 'whole-set': ones(1, 20), none: ones(0, 20) }),
    );
    expect(slim.join(' ')).toContain('it is a lead, not a demonstration');
  });

  it('says so when single-task TTFT does not beat the others, or when nothing is solved', () => {
    const ones = (k: number, n: number) => Array.from({ length: n }, (_, i) => (i < k ? 1 : 0));
    const worse = findings(
      synthetic({ 'single-task': ones(1, 10), 'whole-set': ones(3, 10), none: ones(0, 10) }),
    );
    expect(worse.join(' ')).toContain('Best on vote_2: whole-set.');
    expect(worse.join(' ')).toContain('Single-task TTFT does not beat the other modes');
    const zero = findings(
      synthetic({ 'single-task': ones(0, 10), 'whole-set': ones(0, 10), none: ones(0, 10) }),
    );
    expect(zero.join(' ')).toContain('No mode solved any test output exactly');
    expect(zero.join(' ')).toContain('does not beat');
  });
});
