/**
 * Scoring: the Kaggle ARC Prize score of a submission, and arc24's diagnostic metrics over every
 * prediction a model made.
 *
 * A submission is scored by turning it into predictions (its two attempts are the only predictions),
 * so both entry points share one code path and always agree on the Kaggle score.
 *
 * @module
 */
import { z } from 'zod';
import { formatPercent, formatTable } from './cli/table.js';
import { checkGrid as checkGridAt, entryPath, isRecord, parseOptions } from './data/validate.js';
import { ValidationError } from './errors.js';
import { gridShape } from './grid.js';
import type { Attempts, Grid, Solutions, Submission } from './schemas.js';

/**
 * arc24's metrics. For one test output each is computed over all its predictions (`n` of them,
 * including failed ones); a task's value is the mean over its test outputs; an aggregate value is
 * the mean over tasks. Every value lies in [0, 1].
 */
export interface Metrics {
  /** Share of predictions exactly right (arc24 `accuracy`). */
  readonly accuracy: number;
  /** 1 when any prediction is exactly right (arc24 `pass_n`, i.e. pass@n). */
  readonly passN: number;
  /** 1 when attempt 1 or attempt 2 is exactly right: the Kaggle pass@2 (arc24 `vote_2`). */
  readonly vote2: number;
  /**
   * Sum over predictions of the share of cells equal to the solution's — counting 0 for a prediction
   * of the wrong shape — divided by `n` (arc24 `correct_pixels`).
   */
  readonly correctPixels: number;
  /** Best share of right cells among predictions of the right shape, 0 when none (arc24 `max_correct_pixels`). */
  readonly maxCorrectPixels: number;
  /** Share of predictions with the solution's shape (arc24 `correct_size`). */
  readonly correctSize: number;
  /** 1 when any prediction has the solution's shape (arc24 `any_correct_size`). */
  readonly anyCorrectSize: number;
  /**
   * Share of predictions that produced no grid (`null` candidates); 1 for a test output with no
   * prediction at all (arc24 `unanswered`).
   */
  readonly unanswered: number;
}

/** The metric names in display order. */
export const METRIC_NAMES = [
  'accuracy',
  'passN',
  'vote2',
  'correctPixels',
  'maxCorrectPixels',
  'correctSize',
  'anyCorrectSize',
  'unanswered',
] as const satisfies readonly (keyof Metrics)[];

/** What each metric means, one short line each (used by {@link formatScoreTable}). */
export const METRIC_DESCRIPTIONS: Readonly<Record<keyof Metrics, string>> = {
  accuracy: 'share of all predictions exactly right',
  passN: 'any prediction exactly right',
  vote2: 'attempt 1 or 2 exactly right (Kaggle pass@2)',
  correctPixels: 'mean share of right cells (0 if wrong shape)',
  maxCorrectPixels: 'best share of right cells, right shape only',
  correctSize: 'share of predictions with the right shape',
  anyCorrectSize: 'any prediction with the right shape',
  unanswered: 'share of predictions with no grid (or no entry)',
};

/**
 * Everything a model predicted for one test input.
 * When `candidates` is absent the two attempts are the predictions.
 */
export interface TestPredictions {
  /** The two attempts submitted (after voting), as a pair or in Kaggle's `{attempt_1, attempt_2}` shape. */
  attempts: readonly [Grid, Grid] | Attempts;
  /**
   * Every prediction, already un-augmented, e.g. the 96 of arc24. `null` marks a prediction that
   * yielded no valid grid (it counts in the denominators and in `unanswered`, as in arc24).
   */
  candidates?: readonly (Grid | null)[] | undefined;
}

/** Task id → one {@link TestPredictions} per test input, in test order. */
export type TaskPredictions = Record<string, readonly TestPredictions[]>;

/** Options of {@link scoreSubmission} and {@link scorePredictions}. */
export const ScoreOptionsSchema = z.object({
  /**
   * Score a task or test output the input has no entry for as wrong (and list it in
   * `ScoreReport.unanswered`) instead of throwing.
   * @default false
   */
  allowMissing: z.boolean().default(false),
});
/** Options of {@link scoreSubmission} and {@link scorePredictions}. */
export type ScoreOptions = z.input<typeof ScoreOptionsSchema>;

/** The scores of one task. */
export interface TaskScore {
  /** Kaggle score of the task: the share of its test outputs matched by attempt 1 or 2. */
  readonly score: number;
  /** Mean of {@link tests} over the task's test outputs. */
  readonly metrics: Metrics;
  /** Per test output: matched by attempt 1 or 2. */
  readonly correct: readonly boolean[];
  /** Per test output metrics. */
  readonly tests: readonly Metrics[];
}

/** A test output the scored input had no entry for (only with `allowMissing`). */
export interface UnansweredTest {
  /** The task it belongs to. */
  readonly taskId: string;
  /** Index of the test output within the task. */
  readonly testIndex: number;
}

/**
 * The result of {@link scoreSubmission} / {@link scorePredictions}. Aggregation is two-level, as on
 * Kaggle and in arc24: each task's value is the mean over its test outputs, and each aggregate is the
 * mean over tasks (so every task weighs the same, whatever its number of test outputs).
 */
export interface ScoreReport {
  /** The Kaggle score in [0, 1]: mean over tasks of the task scores (equals `metrics.vote2`). */
  readonly score: number;
  /** Mean over tasks of each task's metrics. */
  readonly metrics: Metrics;
  /** Per task, keyed by id, in the solutions' order. */
  readonly tasks: Readonly<Record<string, TaskScore>>;
  /** Number of tasks scored (those of the solutions). */
  readonly nTasks: number;
  /** Number of test outputs scored. */
  readonly nTestOutputs: number;
  /** Test outputs with no entry in the input, scored as wrong (empty unless `allowMissing`). */
  readonly unanswered: readonly UnansweredTest[];
  /** Task ids present in the input but not in the solutions; they are ignored. */
  readonly extraTasks: readonly string[];
}

function checkGrid(value: unknown, source: string, taskId: string, path: string): Grid {
  return checkGridAt(value, { source, taskId, pathPrefix: path });
}

function invalid(source: string, path: string, message: string, taskId?: string): ValidationError {
  return new ValidationError({ source, taskId, issues: [{ path, message }] });
}

const ZERO: Metrics = {
  accuracy: 0,
  passN: 0,
  vote2: 0,
  correctPixels: 0,
  maxCorrectPixels: 0,
  correctSize: 0,
  anyCorrectSize: 0,
  unanswered: 0,
};

/** Share of equal cells when `a` has `b`'s shape, else `null`. */
function cellShare(prediction: Grid, solution: Grid): number | null {
  const [rows, cols] = gridShape(solution);
  if (prediction.length !== rows || prediction[0]?.length !== cols) return null;
  let same = 0;
  for (let r = 0; r < rows; r++) {
    const pr = prediction[r]!;
    const sr = solution[r]!;
    for (let c = 0; c < cols; c++) if (pr[c] === sr[c]) same++;
  }
  return same / (rows * cols);
}

/** Metrics of one test output; `attempts` is `null` when the input had no entry for it. */
function scoreTest(
  solution: Grid,
  attempts: readonly [Grid, Grid] | null,
  predictions: readonly (Grid | null)[],
): Metrics {
  if (attempts === null) return { ...ZERO, unanswered: 1 };
  const vote2 = attempts.some((a) => cellShare(a, solution) === 1) ? 1 : 0;
  const n = predictions.length;
  if (n === 0) return { ...ZERO, vote2, unanswered: 1 };
  let exact = 0;
  let pixels = 0;
  let maxPixels = 0;
  let sized = 0;
  let failed = 0;
  for (const prediction of predictions) {
    if (prediction === null) {
      failed++;
      continue;
    }
    const share = cellShare(prediction, solution);
    if (share === null) continue;
    sized++;
    pixels += share;
    if (share > maxPixels) maxPixels = share;
    if (share === 1) exact++;
  }
  return {
    accuracy: exact / n,
    passN: exact > 0 ? 1 : 0,
    vote2,
    correctPixels: pixels / n,
    maxCorrectPixels: maxPixels,
    correctSize: sized / n,
    anyCorrectSize: sized > 0 ? 1 : 0,
    unanswered: failed / n,
  };
}

function meanMetrics(items: readonly Metrics[]): Metrics {
  const out: Record<keyof Metrics, number> = { ...ZERO };
  if (items.length === 0) return out;
  for (const name of METRIC_NAMES) {
    let sum = 0;
    for (const m of items) sum += m[name];
    out[name] = sum / items.length;
  }
  return out;
}

/** One test output, normalised and checked. */
interface CheckedTest {
  attempts: readonly [Grid, Grid];
  predictions: readonly (Grid | null)[];
}

function checkSolutions(solutions: unknown): Solutions {
  const source = 'solutions';
  if (!isRecord(solutions)) throw invalid(source, '', 'solutions must be an object: task id → test outputs');
  const ids = Object.keys(solutions);
  if (ids.length === 0) throw invalid(source, '', 'the solutions hold no task to score');
  for (const id of ids) {
    const outputs = solutions[id];
    if (!Array.isArray(outputs) || outputs.length === 0) {
      throw invalid(source, entryPath(id), 'must be a non-empty array of test output grids', id);
    }
    // An index loop, not forEach: a hole in a sparse array is a missing grid, not a skipped one.
    for (let i = 0; i < outputs.length; i++) checkGrid(outputs[i], source, id, `${entryPath(id)}[${i}]`);
  }
  return solutions as Solutions;
}

function checkAttempts(value: unknown, source: string, id: string, path: string): readonly [Grid, Grid] {
  if (Array.isArray(value)) {
    if (value.length !== 2) throw invalid(source, path, 'attempts must hold exactly 2 grids', id);
    return [checkGrid(value[0], source, id, `${path}[0]`), checkGrid(value[1], source, id, `${path}[1]`)];
  }
  if (!isRecord(value)) throw invalid(source, path, 'must be {attempt_1, attempt_2} or a pair of grids', id);
  return [
    checkGrid(value.attempt_1, source, id, `${path}.attempt_1`),
    checkGrid(value.attempt_2, source, id, `${path}.attempt_2`),
  ];
}

/** The shared scorer: `tests(id)` returns a task's checked entries, or `undefined` when it has none. */
function scoreChecked(
  solutions: Solutions,
  inputIds: readonly string[],
  tests: (id: string) => readonly CheckedTest[] | undefined,
  allowMissing: boolean,
  source: string,
): ScoreReport {
  const tasks: Record<string, TaskScore> = {};
  const unanswered: UnansweredTest[] = [];
  let nTestOutputs = 0;
  for (const [id, outputs] of Object.entries(solutions)) {
    const entries = tests(id);
    if (entries === undefined && !allowMissing) {
      throw new ValidationError({
        message: `${source}: task "${id}" is missing (the solutions have ${outputs.length} test output(s) for it)`,
        source,
        taskId: id,
        issues: [{ path: entryPath(id), message: 'missing task' }],
      });
    }
    const given = entries ?? [];
    if (given.length > outputs.length) {
      throw invalid(
        source,
        `${entryPath(id)}[${outputs.length}]`,
        `extra entry: the task has ${outputs.length} test output(s), the ${source} ${given.length} entries`,
        id,
      );
    }
    if (given.length < outputs.length && !allowMissing) {
      throw invalid(
        source,
        `${entryPath(id)}[${given.length}]`,
        `missing entry: the task has ${outputs.length} test output(s), the ${source} ${given.length}`,
        id,
      );
    }
    const perTest = outputs.map((solution, i) => {
      const entry = given[i];
      if (entry === undefined) unanswered.push({ taskId: id, testIndex: i });
      return scoreTest(solution, entry?.attempts ?? null, entry?.predictions ?? []);
    });
    const correct = perTest.map((m) => m.vote2 === 1);
    const metrics = meanMetrics(perTest);
    // defineProperty: an id like `__proto__` must stay an own key, not touch the prototype.
    Object.defineProperty(tasks, id, {
      value: { score: metrics.vote2, metrics, correct, tests: perTest } satisfies TaskScore,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    nTestOutputs += outputs.length;
  }
  const taskScores = Object.values(tasks);
  const metrics = meanMetrics(taskScores.map((t) => t.metrics));
  return {
    score: metrics.vote2,
    metrics,
    tasks,
    nTasks: taskScores.length,
    nTestOutputs,
    unanswered,
    extraTasks: inputIds.filter((id) => !Object.hasOwn(solutions, id)),
  };
}

/**
 * Scores every prediction of a model against the solutions: the Kaggle score from the attempts, and
 * arc24's {@link Metrics} over all candidates. Only the solutions' tasks are scored; others are listed
 * in `extraTasks`.
 *
 * @throws {ValidationError} naming the task id and path when a task or test entry of the solutions is
 *   missing (unless `allowMissing`), a task has more entries than test outputs, or a grid is invalid.
 */
export function scorePredictions(
  predictions: TaskPredictions,
  solutions: Solutions,
  options?: ScoreOptions,
): ScoreReport {
  const o = parseOptions(ScoreOptionsSchema, options, 'scorePredictions');
  const source = 'predictions';
  const checkedSolutions = checkSolutions(solutions);
  if (!isRecord(predictions)) throw invalid(source, '', 'predictions must be an object: task id → entries');
  const tests = (id: string): readonly CheckedTest[] | undefined => {
    if (!Object.hasOwn(predictions, id)) return undefined;
    const entries: unknown = predictions[id];
    if (!Array.isArray(entries))
      throw invalid(source, entryPath(id), 'must be an array of test predictions', id);
    // Array.from visits a sparse array's holes (as undefined), which map would skip.
    return Array.from(entries, (entry: unknown, i): CheckedTest => {
      const path = `${entryPath(id)}[${i}]`;
      if (!isRecord(entry)) throw invalid(source, path, 'must be {attempts, candidates?}', id);
      const attempts = checkAttempts(entry.attempts, source, id, `${path}.attempts`);
      const candidates: unknown = entry.candidates;
      if (candidates === undefined) return { attempts, predictions: attempts };
      if (!Array.isArray(candidates)) throw invalid(source, `${path}.candidates`, 'must be an array', id);
      return {
        attempts,
        predictions: Array.from(candidates, (g: unknown, j) =>
          g === null ? null : checkGrid(g, source, id, `${path}.candidates[${j}]`),
        ),
      };
    });
  };
  return scoreChecked(checkedSolutions, Object.keys(predictions), tests, o.allowMissing, source);
}

/**
 * Scores a Kaggle submission against the solutions, exactly as Kaggle does: a test output counts when
 * `attempt_1` or `attempt_2` equals it. The attempts are also the predictions for the arc24
 * {@link Metrics}, so `metrics.vote2 === score`.
 *
 * @throws {ValidationError} naming the task id and path when the submission misses a task or entry
 *   (unless `allowMissing`), has more entries than test outputs, or holds an invalid grid.
 */
export function scoreSubmission(
  submission: Submission,
  solutions: Solutions,
  options?: ScoreOptions,
): ScoreReport {
  const o = parseOptions(ScoreOptionsSchema, options, 'scoreSubmission');
  const source = 'submission';
  const checkedSolutions = checkSolutions(solutions);
  if (!isRecord(submission)) throw invalid(source, '', 'a submission must be an object: task id → entries');
  const tests = (id: string): readonly CheckedTest[] | undefined => {
    if (!Object.hasOwn(submission, id)) return undefined;
    const entries: unknown = submission[id];
    if (!Array.isArray(entries))
      throw invalid(source, entryPath(id), 'must be an array of {attempt_1, attempt_2}', id);
    // Array.from visits a sparse array's holes (as undefined), which map would skip.
    return Array.from(entries, (entry: unknown, i): CheckedTest => {
      const path = `${entryPath(id)}[${i}]`;
      if (!isRecord(entry)) throw invalid(source, path, 'must be {attempt_1, attempt_2}', id);
      const attempts = checkAttempts(entry, source, id, path);
      return { attempts, predictions: attempts };
    });
  };
  return scoreChecked(checkedSolutions, Object.keys(submission), tests, o.allowMissing, source);
}

/** Options of {@link formatScoreTable}. */
export const FormatScoreTableOptionsSchema = z.object({
  /**
   * Add one row per task after the aggregate table.
   * @default false
   */
  perTask: z.boolean().default(false),
});
/** Options of {@link formatScoreTable}. */
export type FormatScoreTableOptions = z.input<typeof FormatScoreTableOptionsSchema>;

/** Renders a {@link ScoreReport} as plain-text tables: the Kaggle score, the aggregate metrics, optionally per task. */
export function formatScoreTable(report: ScoreReport, options?: FormatScoreTableOptions): string {
  const o = parseOptions(FormatScoreTableOptionsSchema, options, 'formatScoreTable');
  if (
    !isRecord(report) ||
    typeof report.score !== 'number' ||
    !isRecord(report.metrics) ||
    !isRecord(report.tasks)
  ) {
    throw invalid(
      'formatScoreTable',
      'report',
      'expected a ScoreReport (from scoreSubmission or scorePredictions)',
    );
  }
  const lines = [
    `Kaggle score: ${report.score.toFixed(4)} (${formatPercent(report.score, 2)}) over ${report.nTasks} task(s), ${report.nTestOutputs} test output(s)`,
  ];
  if (report.unanswered.length > 0) {
    lines.push(`Unanswered: ${report.unanswered.length} test output(s) had no entry and count as wrong`);
  }
  if (report.extraTasks.length > 0) {
    lines.push(`Ignored: ${report.extraTasks.length} task(s) not in the solutions`);
  }
  lines.push('');
  lines.push(
    formatTable(
      ['metric', 'value', 'meaning'],
      METRIC_NAMES.map((name) => [name, formatPercent(report.metrics[name]), METRIC_DESCRIPTIONS[name]]),
      { align: ['left', 'right', 'left'] },
    ),
  );
  lines.push('', 'Each value: mean over test outputs within a task, then mean over tasks.');
  if (o.perTask) {
    const header = ['task', 'tests', 'score', ...METRIC_NAMES];
    const rows = Object.entries(report.tasks).map(([id, t]) => [
      id,
      String(t.correct.length),
      t.score.toFixed(3),
      ...METRIC_NAMES.map((name) => formatPercent(t.metrics[name])),
    ]);
    lines.push(
      '',
      formatTable(header, rows, { align: ['left', ...header.slice(1).map(() => 'right' as const)] }),
    );
  }
  return lines.join('\n');
}
