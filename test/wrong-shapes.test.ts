/**
 * Values of the wrong shape from JavaScript callers (null, an array for an object, a grid too large) are
 * ValidationErrors that name the value, not TypeErrors from deep inside a function.
 */
import { describe, expect, it } from 'vitest';
import {
  answerTextFor,
  buildInferenceInputs,
  buildInferencePrompt,
  buildTrainingText,
  checkSubmission,
  formatScoreTable,
  joinPredictions,
  largestAnswerShape,
  loadTaskSetFromObject,
  mergeSolutions,
  parseSolutions,
  renderReport,
  type Task,
  ValidationError,
  withLeftOutTasks,
} from '../src/index.js';
import { thrown } from './helpers.js';

const task: Task = {
  train: [
    { input: [[1]], output: [[2]] },
    { input: [[3]], output: [[4, 5]] },
  ],
  test: [{ input: [[5]] }],
};

describe('wrong shapes', () => {
  it('prompt builders name the bad grid of the call and its cell', () => {
    const bad = structuredClone(task);
    (bad.train[1]!.output[0] as unknown[])[1] = 'x';
    const e = thrown(() => buildInferencePrompt(bad.train, [[1]]));
    expect(e.message).toBe(
      'buildInferencePrompt: train[1].output[0][1]: a cell must be an integer 0–9, got x',
    );
    expect(thrown(() => buildInferencePrompt(task.train, null as never)).path).toBe('input');
    expect(thrown(() => buildInferencePrompt(null as never, [[1]])).path).toBe('train');
    expect(thrown(() => buildInferencePrompt([null] as never, [[1]])).path).toBe('train[0]');
    expect(
      thrown(() => buildTrainingText(task.train, { input: [[1]], output: [[1], 2] } as never)).path,
    ).toBe('target.output[1]');
    expect(thrown(() => buildTrainingText(task.train, null as never)).path).toBe('target');
    expect(thrown(() => answerTextFor(undefined as never)).message).toMatch(/grid must be an array of rows/);
  });

  it('refuse grids larger than 30 × 30, as every loader does', () => {
    const wide = [Array.from({ length: 31 }, () => 0)];
    expect(thrown(() => answerTextFor(wide)).message).toMatch(/at most 30 columns, got 31/);
    const tall = Array.from({ length: 31 }, () => [0]);
    expect(thrown(() => buildInferencePrompt(task.train, tall, 'compact')).message).toMatch(
      /at most 30 rows/,
    );
    expect(answerTextFor(Array.from({ length: 30 }, () => Array.from({ length: 30 }, () => 7)))).toContain(
      '30x30',
    );
  });

  it('id-keyed inputs that are not objects name the argument', () => {
    expect(thrown(() => joinPredictions(null as never, {})).message).toMatch(
      /tasks must be an object keyed by task id/,
    );
    expect(thrown(() => joinPredictions({ a: task }, [] as never)).message).toMatch(
      /predictions must be an object/,
    );
    expect(thrown(() => joinPredictions({ a: null } as never, {})).path).toBe('["a"].test');
    expect(thrown(() => mergeSolutions(null as never, {})).message).toMatch(/tasks must be an object/);
    expect(thrown(() => mergeSolutions({ a: task }, null as never)).message).toMatch(
      /solutions must be an object/,
    );
    expect(thrown(() => withLeftOutTasks({}, null as never)).message).toMatch(
      /leftOutTests must be an object/,
    );
    expect(thrown(() => withLeftOutTasks({}, { b: 'x' } as never)).path).toBe('leftOutTests["b"]');
    const submission = { a: [{ attempt_1: [[1]], attempt_2: [[1]] }] };
    expect(thrown(() => checkSubmission(submission, null as never)).message).toMatch(
      /tasks must be an object/,
    );
    // The fallback that copies a test input checks that input.
    const noInput = { a: { train: [], test: [{ input: null }] } } as never;
    expect(thrown(() => joinPredictions(noInput, {}, { fallback: 'input' })).path).toBe(
      '["a"].test[0].input',
    );
  });

  it('reports, score tables, answer shapes and inference inputs check what they read', () => {
    expect(thrown(() => renderReport(null as never)).message).toMatch(/report input must be an object/);
    expect(thrown(() => renderReport({ tasks: {}, records: null } as never)).path).toBe('records');
    expect(thrown(() => formatScoreTable(null as never)).message).toMatch(/expected a ScoreReport/);
    expect(thrown(() => largestAnswerShape(null as never))).toBeInstanceOf(ValidationError);
    expect(thrown(() => largestAnswerShape({ train: [{ input: [[1]] }], test: [] } as never)).path).toBe(
      'train[0].output',
    );
    expect(thrown(() => buildInferenceInputs(task, 0, null as never)).path).toBe('augmentations');
    // Well-formed input is unchanged by the checks.
    expect(largestAnswerShape(task)).toEqual([1, 2]);
    expect(renderReport({ tasks: { a: task }, records: [] })).toContain('<!doctype html>');
  });
});

describe('objects of the wrong kind', () => {
  it('are named by what they should be, not by the schema library\'s "expected object"', async () => {
    const set = {
      a: null,
      b: [1, 2],
      c: { ...task, train: [null] },
      d: { ...task, test: [[[1]]] },
    };
    const messages = Object.entries(set).map(
      ([id, value]) => thrown(() => loadTaskSetFromObject({ [id]: value })).message,
    );
    expect(messages).toEqual([
      '(object): task "a": must be a task {train, test}, not null',
      '(object): task "b": must be a task {train, test}, not an array',
      '(object): task "c": train[0]: must be a pair {input, output}, not null',
      '(object): task "d": test[0]: must be a test pair {input}, not an array',
    ]);
    const e = thrown(() => checkSubmission({ x: ['nope'] } as never, { x: task }));
    expect(e.message).toMatch(/must be \{attempt_1, attempt_2\}/);
  });
});

describe('solutions of the wrong depth', () => {
  it('a bare grid where a list of grids belongs is named as that mix-up', () => {
    const e = thrown(() =>
      parseSolutions({
        abc: [
          [1, 2],
          [3, 4],
        ],
      }),
    );
    expect(e.message).toBe(
      'task "abc": ["abc"]: expected a list of grids (one per test input), got one bare grid: wrap it as [grid]',
    );
    expect(
      parseSolutions({
        abc: [
          [
            [1, 2],
            [3, 4],
          ],
        ],
      }).abc,
    ).toEqual([
      [
        [1, 2],
        [3, 4],
      ],
    ]);
  });
});
