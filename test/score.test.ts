import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import type { Grid, Solutions, Submission, TaskSet } from '../src/schemas.js';
import { SubmissionSchema } from '../src/schemas.js';
import {
  formatScoreTable,
  METRIC_NAMES,
  type Metrics,
  type ScoreReport,
  scorePredictions,
  scoreSubmission,
  type TaskPredictions,
} from '../src/score.js';
import { HAS_SHARED_DATA, KAGGLE } from './helpers.js';

const readJson = (name: string): unknown => JSON.parse(readFileSync(join(KAGGLE, name), 'utf8'));

/** Plain cell-by-cell comparison, independent of the scorer's helpers. */
function sameGrid(a: Grid, b: Grid): boolean {
  if (a.length !== b.length) return false;
  for (let r = 0; r < a.length; r++) {
    if (a[r]!.length !== b[r]!.length) return false;
    for (let c = 0; c < a[r]!.length; c++) if (a[r]![c] !== b[r]![c]) return false;
  }
  return true;
}

const mean = (xs: number[]): number => xs.reduce((s, x) => s + x, 0) / xs.length;

describe.skipIf(!HAS_SHARED_DATA)('scoring the Kaggle 2024 evaluation set', () => {
  const solutions = readJson('arc-agi_evaluation_solutions.json') as Solutions;
  const challenges = readJson('arc-agi_evaluation_challenges.json') as TaskSet;

  it('gives 1.0 and every metric at its best for the solutions themselves', () => {
    const submission: Submission = Object.fromEntries(
      Object.entries(solutions).map(([id, outs]) => [id, outs.map((o) => ({ attempt_1: o, attempt_2: o }))]),
    );
    const report = scoreSubmission(submission, solutions);
    expect(report.score).toBe(1);
    expect(report.nTasks).toBe(Object.keys(solutions).length);
    expect(report.nTestOutputs).toBe(Object.values(solutions).reduce((n, outs) => n + outs.length, 0));
    for (const name of METRIC_NAMES) expect(report.metrics[name]).toBe(name === 'unanswered' ? 0 : 1);
    expect(Object.values(report.tasks).every((t) => t.correct.every(Boolean))).toBe(true);
    expect(report.unanswered).toEqual([]);
    expect(report.extraTasks).toEqual([]);
  });

  it('matches an independent count for input-as-answer and mixed submissions', () => {
    const ids = Object.keys(solutions);
    // attempt_1 = the test input; attempt_2 = the solution for every third task's first test, else the input.
    const submission: Submission = {};
    ids.forEach((id, t) => {
      submission[id] = challenges[id]!.test.map((test, i) => ({
        attempt_1: test.input,
        attempt_2: t % 3 === 0 && i === 0 ? solutions[id]![i]! : test.input,
      }));
    });
    const inputOnly: Submission = Object.fromEntries(
      ids.map((id) => [id, challenges[id]!.test.map((x) => ({ attempt_1: x.input, attempt_2: x.input }))]),
    );

    const expectedScore = (sub: Submission): number =>
      mean(
        ids.map((id) =>
          mean(
            solutions[id]!.map((sol, i) => {
              const entry = sub[id]![i]!;
              return sameGrid(entry.attempt_1, sol) || sameGrid(entry.attempt_2, sol) ? 1 : 0;
            }),
          ),
        ),
      );
    const expectedSize = mean(
      ids.map((id) =>
        mean(
          solutions[id]!.map((sol, i) => {
            const input = challenges[id]!.test[i]!.input;
            return input.length === sol.length && input[0]!.length === sol[0]!.length ? 1 : 0;
          }),
        ),
      ),
    );
    const expectedPixels = mean(
      ids.map((id) =>
        mean(
          solutions[id]!.map((sol, i) => {
            const input = challenges[id]!.test[i]!.input;
            if (input.length !== sol.length || input[0]!.length !== sol[0]!.length) return 0;
            let same = 0;
            for (let r = 0; r < sol.length; r++)
              for (let c = 0; c < sol[0]!.length; c++) if (input[r]![c] === sol[r]![c]) same++;
            return same / (sol.length * sol[0]!.length);
          }),
        ),
      ),
    );

    const plain = scoreSubmission(inputOnly, solutions);
    expect(plain.score).toBeCloseTo(expectedScore(inputOnly), 12);
    expect(plain.metrics.correctSize).toBeCloseTo(expectedSize, 12);
    expect(plain.metrics.anyCorrectSize).toBeCloseTo(expectedSize, 12);
    expect(plain.metrics.correctPixels).toBeCloseTo(expectedPixels, 12);
    expect(plain.metrics.maxCorrectPixels).toBeCloseTo(expectedPixels, 12);

    const mixed = scoreSubmission(submission, solutions);
    const mixedExpected = expectedScore(submission);
    expect(mixedExpected).toBeGreaterThan(0);
    expect(mixed.score).toBeCloseTo(mixedExpected, 12);
    expect(mixed.metrics.vote2).toBe(mixed.score);
    expect(mixed.metrics.passN).toBe(mixed.score); // the attempts are the only predictions
  });

  it('the sample submission has the submission shape', () => {
    expect(SubmissionSchema.safeParse(readJson('sample_submission.json')).success).toBe(true);
  });
});

const G1: Grid = [
  [1, 1],
  [0, 0],
];
const G1_ONE_OFF: Grid = [
  [1, 1],
  [0, 5],
];
const WRONG_SHAPE: Grid = [[1, 1, 0]];
const solutions: Solutions = { a: [G1], b: [G1, WRONG_SHAPE] };

describe('arc24 metrics', () => {
  it('are computed over all predictions, per test, then per task, then over tasks', () => {
    const predictions: TaskPredictions = {
      // 4 predictions: exact, one cell off (3/4 pixels), wrong shape, failed.
      a: [{ attempts: [G1_ONE_OFF, WRONG_SHAPE], candidates: [G1, G1_ONE_OFF, WRONG_SHAPE, null] }],
      b: [
        { attempts: [G1, G1], candidates: [G1_ONE_OFF, G1_ONE_OFF] },
        { attempts: { attempt_1: G1, attempt_2: WRONG_SHAPE } }, // candidates absent: the attempts
      ],
    };
    const report = scorePredictions(predictions, solutions);
    const a = report.tasks.a!;
    expect(a.correct).toEqual([false]); // voting picked wrong although a candidate was right
    expect(a.metrics).toEqual({
      accuracy: 1 / 4,
      passN: 1,
      vote2: 0,
      correctPixels: (1 + 3 / 4) / 4,
      maxCorrectPixels: 1,
      correctSize: 2 / 4,
      anyCorrectSize: 1,
      unanswered: 1 / 4,
    } satisfies Metrics);
    const b = report.tasks.b!;
    expect(b.correct).toEqual([true, true]);
    expect(b.tests[0]).toMatchObject({ accuracy: 0, passN: 0, vote2: 1, correctPixels: 3 / 4 });
    expect(b.tests[1]).toMatchObject({ accuracy: 1 / 2, passN: 1, correctSize: 1 / 2, maxCorrectPixels: 1 });
    expect(b.score).toBe(1);
    expect(report.score).toBe((0 + 1) / 2);
    for (const name of METRIC_NAMES) {
      expect(report.metrics[name]).toBeCloseTo((a.metrics[name] + b.metrics[name]) / 2, 12);
      expect(b.metrics[name]).toBeCloseTo((b.tests[0]![name] + b.tests[1]![name]) / 2, 12);
    }
  });

  it('a test with no prediction at all is unanswered; its attempts still count for vote2', () => {
    const report = scorePredictions({ a: [{ attempts: [G1, G1], candidates: [] }] }, { a: [G1] });
    expect(report.tasks.a!.metrics).toMatchObject({ unanswered: 1, accuracy: 0, passN: 0, vote2: 1 });
  });

  it('a submission scores the same through scoreSubmission and scorePredictions', () => {
    const submission: Submission = {
      a: [{ attempt_1: G1_ONE_OFF, attempt_2: G1 }],
      b: [
        { attempt_1: WRONG_SHAPE, attempt_2: G1_ONE_OFF },
        { attempt_1: WRONG_SHAPE, attempt_2: WRONG_SHAPE },
      ],
    };
    const viaPredictions = scorePredictions(
      Object.fromEntries(
        Object.entries(submission).map(([id, es]) => [
          id,
          es.map((e) => ({ attempts: [e.attempt_1, e.attempt_2] as [Grid, Grid] })),
        ]),
      ),
      solutions,
    );
    expect(scoreSubmission(submission, solutions)).toEqual(viaPredictions);
    expect(viaPredictions.score).toBeCloseTo((1 + 0.5) / 2, 12);
  });
});

describe('missing and extra entries', () => {
  const full: Submission = {
    a: [{ attempt_1: G1, attempt_2: G1 }],
    b: [
      { attempt_1: G1, attempt_2: G1 },
      { attempt_1: WRONG_SHAPE, attempt_2: WRONG_SHAPE },
    ],
  };

  const catchError = (fn: () => unknown): ValidationError => {
    try {
      fn();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      return error as ValidationError;
    }
    throw new Error('expected a ValidationError');
  };

  it('a missing task is a ValidationError naming the task', () => {
    const error = catchError(() => scoreSubmission({ a: full.a! }, solutions));
    expect(error.taskId).toBe('b');
    expect(error.path).toBe('["b"]');
    expect(error.message).toContain('"b"');
  });

  it('too few or too many entries is a ValidationError naming task and path', () => {
    const fewer = catchError(() => scoreSubmission({ ...full, b: full.b!.slice(0, 1) }, solutions));
    expect([fewer.taskId, fewer.path]).toEqual(['b', '["b"][1]']);
    const more = catchError(() => scoreSubmission({ ...full, a: [...full.a!, ...full.a!] }, solutions));
    expect([more.taskId, more.path]).toEqual(['a', '["a"][1]']);
    const bad = catchError(() =>
      scoreSubmission({ ...full, a: [{ attempt_1: G1, attempt_2: [[1, 2], [3]] }] }, solutions),
    );
    expect([bad.taskId, bad.path]).toEqual(['a', '["a"][0].attempt_2[1]']);
  });

  it('allowMissing scores missing tests as wrong and lists them', () => {
    const report = scoreSubmission({ b: full.b!.slice(0, 1) }, solutions, { allowMissing: true });
    expect(report.unanswered).toEqual([
      { taskId: 'a', testIndex: 0 },
      { taskId: 'b', testIndex: 1 },
    ]);
    expect(report.tasks.a).toMatchObject({ score: 0, correct: [false] });
    expect(report.tasks.a!.metrics.unanswered).toBe(1);
    expect(report.tasks.b!.correct).toEqual([true, false]);
    expect(report.score).toBeCloseTo((0 + 0.5) / 2, 12);
    expect(report.metrics.unanswered).toBeCloseTo((1 + 0.5) / 2, 12);
  });

  it('tasks absent from the solutions are ignored and listed', () => {
    const report = scoreSubmission({ ...full, zzz: full.a! }, solutions);
    expect(report.extraTasks).toEqual(['zzz']);
    expect(Object.keys(report.tasks)).toEqual(['a', 'b']);
  });

  it('keeps an id like __proto__ as an ordinary task', () => {
    const sol = JSON.parse('{"__proto__": [[[1]]]}') as Solutions;
    const sub = JSON.parse('{"__proto__": [{"attempt_1": [[1]], "attempt_2": [[2]]}]}') as Submission;
    const report = scoreSubmission(sub, sol);
    expect(Object.keys(report.tasks)).toEqual(['__proto__']);
    expect(report.score).toBe(1);
  });

  it('rejects empty or invalid solutions', () => {
    expect(() => scoreSubmission(full, {})).toThrow(ValidationError);
    const error = catchError(() => scoreSubmission(full, { a: [[[1, 10]]] }));
    expect([error.taskId, error.path, error.source]).toEqual(['a', '["a"][0][0][1]', 'solutions']);
  });

  it('a hole in a sparse array (JavaScript callers) is a missing value, not a skipped one', () => {
    const sparseSolutions = { a: solutions.a!, b: [...solutions.b!] };
    delete sparseSolutions.b[1];
    const hole = catchError(() => scoreSubmission(full, sparseSolutions));
    expect([hole.source, hole.path]).toEqual(['solutions', '["b"][1]']);
    const sparseEntries = [...full.b!];
    delete sparseEntries[1];
    const entry = catchError(() => scoreSubmission({ ...full, b: sparseEntries }, solutions));
    expect([entry.source, entry.path]).toEqual(['submission', '["b"][1]']);
  });
});

describe('formatScoreTable', () => {
  const report: ScoreReport = scoreSubmission(
    {
      a: [{ attempt_1: G1, attempt_2: G1 }],
      b: [
        { attempt_1: G1_ONE_OFF, attempt_2: G1_ONE_OFF },
        { attempt_1: WRONG_SHAPE, attempt_2: WRONG_SHAPE },
      ],
    },
    solutions,
  );

  it('shows the score and every metric, and per-task rows on request', () => {
    const table = formatScoreTable(report);
    expect(table).toContain('Kaggle score: 0.7500 (75.00%)');
    for (const name of METRIC_NAMES) expect(table).toMatch(new RegExp(`^${name}\\s+\\d+\\.\\d%`, 'm'));
    expect(table).not.toMatch(/^a\s+1\s/m);
    const perTask = formatScoreTable(report, { perTask: true });
    expect(perTask).toMatch(/^a\s+1\s+1\.000\s/m);
    expect(perTask).toMatch(/^b\s+2\s+0\.500\s/m);
  });
});
