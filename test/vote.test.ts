import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import { gridKey } from '../src/grid.js';
import { createRng } from '../src/rng.js';
import type { Grid } from '../src/schemas.js';
import { type Candidate, voteAttempts } from '../src/vote.js';

const A: Grid = [
  [1, 2],
  [3, 4],
];
const B: Grid = [[5, 5, 5]];
const C: Grid = [[0], [7]];
const D: Grid = [[9]];

const copy = (g: Grid): Grid => g.map((r) => r.slice());

describe('voteAttempts', () => {
  it('ranks by frequency and counts votes', () => {
    const candidates: Candidate[] = [
      { grid: copy(B) },
      { grid: copy(A) },
      { grid: copy(A) },
      { grid: copy(C) },
      { grid: copy(A) },
      { grid: copy(B) },
    ];
    const result = voteAttempts(candidates);
    expect(result.attempt1).toEqual(A);
    expect(result.attempt2).toEqual(B);
    expect(result.ranked.map((r) => [r.key, r.votes])).toEqual([
      [gridKey(A), 3],
      [gridKey(B), 2],
      [gridKey(C), 1],
    ]);
    expect(result.ranked.reduce((n, r) => n + r.votes, 0)).toBe(candidates.length);
  });

  it('frequency beats log-prob', () => {
    const result = voteAttempts([
      { grid: A, logProb: -5 },
      { grid: A, logProb: -6 },
      { grid: B, logProb: -0.01 },
    ]);
    expect(result.attempt1).toEqual(A);
    expect(result.attempt2).toEqual(B);
  });

  it('breaks ties by mean log-prob, higher first', () => {
    const result = voteAttempts([
      { grid: A, logProb: -1 },
      { grid: A, logProb: -3 }, // mean -2
      { grid: B, logProb: -0.5 },
      { grid: B, logProb: -2.5 }, // mean -1.5
      { grid: C, logProb: -0.1 },
    ]);
    expect(result.attempt1).toEqual(B);
    expect(result.attempt2).toEqual(A);
    expect(result.ranked.map((r) => r.meanLogProb)).toEqual([-1.5, -2, -0.1]);
  });

  it('ranks groups without log-probs after those with one, and means only the given ones', () => {
    const result = voteAttempts([
      { grid: A },
      { grid: B, logProb: -100 },
      { grid: C },
      { grid: C, logProb: -4 },
    ]);
    expect(result.ranked.map((r) => [r.key, r.meanLogProb])).toEqual([
      [gridKey(C), -4],
      [gridKey(B), -100],
      [gridKey(A), null],
    ]);
  });

  it('resolves full ties by ascending gridKey, whatever the input order', () => {
    const grids = [D, B, C, A];
    const sortedKeys = grids.map(gridKey).sort();
    for (const order of [grids, grids.slice().reverse()]) {
      const result = voteAttempts(order.map((grid) => ({ grid, logProb: -1 })));
      expect(result.ranked.map((r) => r.key)).toEqual(sortedKeys);
    }
    expect(voteAttempts([{ grid: B }, { grid: A }]).attempt1).toEqual(gridKey(A) < gridKey(B) ? A : B);
  });

  it('repeats attempt 1 as attempt 2 when there is one distinct grid, as separate copies', () => {
    const input = copy(A);
    const result = voteAttempts([{ grid: input }, { grid: copy(A), logProb: -1 }]);
    expect(result.attempt1).toEqual(A);
    expect(result.attempt2).toEqual(A);
    expect(result.attempt1).not.toBe(result.attempt2);
    expect(result.attempt1).not.toBe(input);
    expect(result.ranked).toHaveLength(1);
    expect(result.ranked[0]?.votes).toBe(2);
  });

  it('returns null attempts when there are no candidates', () => {
    expect(voteAttempts([])).toEqual({ attempt1: null, attempt2: null, ranked: [] });
  });

  it('minVotes keeps low-voted grids out of the attempts but in ranked', () => {
    const candidates = [{ grid: A }, { grid: A }, { grid: B }];
    const two = voteAttempts(candidates, { minVotes: 2 });
    expect(two.attempt1).toEqual(A);
    expect(two.attempt2).toEqual(A);
    expect(two.ranked).toHaveLength(2);
    const three = voteAttempts(candidates, { minVotes: 3 });
    expect(three.attempt1).toBeNull();
    expect(three.attempt2).toBeNull();
  });

  it('rejects invalid grids, NaN log-probs and bad options with ValidationError', () => {
    expect(() => voteAttempts([{ grid: A }, { grid: [[1, 2], [3]] }])).toThrow(ValidationError);
    try {
      voteAttempts([{ grid: A }, { grid: [[1, 12]] }]);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).path).toBe('candidates[1].grid[0][1]');
    }
    expect(() => voteAttempts([{ grid: A, logProb: Number.NaN }])).toThrow(/candidates\[0\]\.logProb/);
    expect(() =>
      voteAttempts([
        { grid: A, logProb: Number.NEGATIVE_INFINITY },
        { grid: A, logProb: Infinity },
      ]),
    ).toThrow(/candidates\[1\]\.logProb: .*\+Infinity/);
    expect(() => voteAttempts([{ grid: A }], { minVotes: 0 })).toThrow(ValidationError);
  });

  it('gives the same result for any order of the candidates (property)', () => {
    const pool = [A, B, C, D];
    const candidateArb = fc.record({
      grid: fc.constantFrom(...pool),
      logProb: fc.option(fc.double({ min: -50, max: 0, noNaN: true }), { nil: undefined }),
    });
    fc.assert(
      fc.property(fc.array(candidateArb, { maxLength: 30 }), fc.integer(), (candidates, seed) => {
        const shuffled = createRng(seed).shuffle(candidates);
        expect(voteAttempts(shuffled)).toEqual(voteAttempts(candidates));
      }),
      { numRuns: 200 },
    );
  });
});
