/**
 * The generation limit of a view (`answerSide` in src/ttft/predict.ts): large enough for an answer larger than
 * any grid the task shows, as upscaling tasks give.
 */
import { describe, expect, it } from 'vitest';
import { loadTasks } from '../src/data/load.js';
import type { Task } from '../src/schemas.js';
import { answerSide } from '../src/ttft/predict.js';
import { ARC1_EVALUATION, ARC1_TRAINING, HAS_SHARED_DATA } from './helpers.js';

const fill = (rows: number, cols: number) =>
  Array.from({ length: rows }, () => new Array<number>(cols).fill(1));

describe('answerSide', () => {
  it('grows each test input as much as the train pairs grow, up to 30', () => {
    const twice: Task = { train: [{ input: fill(2, 3), output: fill(4, 6) }], test: [{ input: fill(5, 4) }] };
    expect(answerSide(twice)).toBe(10);
    const shrinking: Task = {
      train: [{ input: fill(6, 6), output: fill(2, 2) }],
      test: [{ input: fill(3, 9) }],
    };
    expect(answerSide(shrinking)).toBe(9); // the largest grid shown
    const big: Task = { train: [{ input: fill(2, 2), output: fill(20, 20) }], test: [{ input: fill(5, 5) }] };
    expect(answerSide(big)).toBe(30);
  });

  it.skipIf(!HAS_SHARED_DATA)(
    'bounds every ARC-AGI-1 answer but those whose size follows other rules',
    async () => {
      const over: string[] = [];
      for (const dir of [ARC1_EVALUATION, ARC1_TRAINING]) {
        const { tasks } = await loadTasks(dir);
        for (const [id, task] of Object.entries(tasks)) {
          const side = answerSide(task);
          if (task.test.some((t) => t.output && Math.max(t.output.length, t.output[0]!.length) > side))
            over.push(id);
        }
      }
      // 15 tasks before the growth (e.g. 833dafe3: 8×8 test input, 16×16 answer); these 8 are left.
      expect(over.sort()).toEqual(
        [
          '469497ad',
          '91413438',
          'ad7e01d0',
          'ccd554ac',
          'd4b1c2b1',
          'd631b094',
          'f25fbde4',
          'feca6190',
        ].sort(),
      );
    },
  );
});
