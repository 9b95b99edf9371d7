/**
 * Voting: turns the many (already un-augmented) predictions for one test input into Kaggle's two attempts.
 *
 * Identical grids are grouped; groups rank by votes, then by mean log-probability, then by their
 * {@link gridKey} — so the result never depends on the order the candidates arrive in.
 *
 * @module
 */
import { z } from 'zod';
import { parseOptions, validateGrid } from './data/validate.js';
import { ValidationError } from './errors.js';
import { cloneGrid, gridKey } from './grid.js';
import type { Grid } from './schemas.js';

/** One prediction for a test input, already mapped back through its augmentation's inverse. */
export interface Candidate {
  /** The predicted grid, in the task's original frame. */
  grid: Grid;
  /**
   * Score of the prediction used to break ties between equally voted grids, higher is better —
   * e.g. the mean per-token log-probability of the answer.
   */
  logProb?: number | undefined;
  /** The augmentation the prediction was made under (kept for bookkeeping; voting ignores it). */
  augmentation?: unknown;
}

/** Options of {@link voteAttempts}. */
export const VoteOptionsSchema = z.object({
  /**
   * Fewest votes a grid needs to become an attempt; groups with fewer still appear in `ranked`.
   * @default 1
   */
  minVotes: z.number().int().positive().default(1),
});
/** Options of {@link voteAttempts}. */
export type VoteOptions = z.input<typeof VoteOptionsSchema>;

/** One distinct grid and the candidates that voted for it. */
export interface RankedCandidate {
  /** The grid (a copy; the input grids are never returned). */
  readonly grid: Grid;
  /** How many candidates predicted exactly this grid. */
  readonly votes: number;
  /** Mean `logProb` over the voters that have one; `null` when none has. */
  readonly meanLogProb: number | null;
  /** {@link gridKey} of the grid. */
  readonly key: string;
}

/** The outcome of {@link voteAttempts}. */
export interface VoteResult {
  /** Best grid, or `null` when no grid has `minVotes` votes (the caller fills a fallback). */
  readonly attempt1: Grid | null;
  /**
   * Second-best grid. When only one grid qualifies it repeats `attempt1` (as a separate copy),
   * because Kaggle requires both attempts; `null` exactly when `attempt1` is.
   */
  readonly attempt2: Grid | null;
  /** Every distinct grid, best first (including those below `minVotes`). */
  readonly ranked: readonly RankedCandidate[];
}

/**
 * Orders groups: more votes first; then higher mean log-prob (groups without one after those with);
 * then ascending {@link gridKey} (plain code-unit order), so that ties resolve the same way however
 * the candidates were ordered.
 */
function compareRanked(a: RankedCandidate, b: RankedCandidate): number {
  if (a.votes !== b.votes) return b.votes - a.votes;
  if (a.meanLogProb !== b.meanLogProb) {
    if (a.meanLogProb === null) return 1;
    if (b.meanLogProb === null) return -1;
    return b.meanLogProb > a.meanLogProb ? 1 : -1;
  }
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0;
}

/** Mean of `values`, summed in sorted order so that the input order cannot shift the last bit. */
function stableMean(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = values.slice().sort((x, y) => x - y);
  let sum = 0;
  for (const v of sorted) sum += v;
  return sum / sorted.length;
}

/**
 * Votes the candidates for one test input down to two attempts (arc24's scheme: most frequent grids
 * win, ties go to the higher mean log-prob, remaining ties to the smaller {@link gridKey}).
 * Pure; the result is independent of the candidates' order.
 *
 * @throws {ValidationError} when a candidate's grid is not a valid grid or its `logProb` is NaN or +Infinity.
 */
export function voteAttempts(candidates: readonly Candidate[], options?: VoteOptions): VoteResult {
  const o = parseOptions(VoteOptionsSchema, options, 'voteAttempts');
  if (!Array.isArray(candidates)) {
    throw new ValidationError({ issues: [{ path: 'candidates', message: 'candidates must be an array' }] });
  }
  const groups = new Map<string, { grid: Grid; votes: number; logProbs: number[] }>();
  candidates.forEach((candidate, i) => {
    const grid = validateGrid(candidate?.grid, { pathPrefix: `candidates[${i}].grid` });
    const logProb = candidate.logProb;
    // +Infinity beside -Infinity in one group would make its mean NaN, and the ranking order-dependent.
    if (
      logProb !== undefined &&
      (typeof logProb !== 'number' || Number.isNaN(logProb) || logProb === Number.POSITIVE_INFINITY)
    ) {
      throw new ValidationError({
        issues: [
          { path: `candidates[${i}].logProb`, message: 'logProb must be a number (not NaN or +Infinity)' },
        ],
      });
    }
    const key = gridKey(grid);
    let group = groups.get(key);
    if (group === undefined) {
      group = { grid, votes: 0, logProbs: [] };
      groups.set(key, group);
    }
    group.votes += 1;
    if (logProb !== undefined) group.logProbs.push(logProb);
  });

  const ranked: RankedCandidate[] = [...groups].map(([key, g]) => ({
    grid: cloneGrid(g.grid),
    votes: g.votes,
    meanLogProb: stableMean(g.logProbs),
    key,
  }));
  ranked.sort(compareRanked);

  const eligible = ranked.filter((r) => r.votes >= o.minVotes);
  const first = eligible[0];
  const second = eligible[1] ?? first;
  return {
    attempt1: first ? cloneGrid(first.grid) : null,
    attempt2: second ? cloneGrid(second.grid) : null,
    ranked,
  };
}
