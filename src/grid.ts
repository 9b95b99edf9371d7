/**
 * Small pure helpers on grids. They run on hot paths (voting, scoring, every augmentation) and do not check
 * their input: give them grids, or check untrusted values first with `validateGrid` (a `ValidationError`
 * that names the cell).
 *
 * @module
 */
import type { Grid } from './schemas.js';

/** `[rows, cols]` of a grid. */
export function gridShape(grid: Grid): [rows: number, cols: number] {
  return [grid.length, grid[0]?.length ?? 0];
}

/** True when both grids have the same shape and cells. */
export function gridsEqual(a: Grid, b: Grid): boolean {
  if (a.length !== b.length) return false;
  for (let r = 0; r < a.length; r++) {
    const ra = a[r]!;
    const rb = b[r]!;
    if (ra.length !== rb.length) return false;
    for (let c = 0; c < ra.length; c++) if (ra[c] !== rb[c]) return false;
  }
  return true;
}

/** A deep copy of a grid. */
export function cloneGrid(grid: Grid): Grid {
  return grid.map((row) => row.slice());
}

/** A compact string key for a grid (`010|111|010`; rows joined by `|`, so shape is kept), for hashing, voting and de-duplication. */
export function gridKey(grid: Grid): string {
  return grid.map((row) => row.join('')).join('|');
}

/** Inverse of {@link gridKey}. */
export function gridFromKey(key: string): Grid {
  return key.split('|').map((row) => Array.from(row, (ch) => ch.charCodeAt(0) - 48));
}

/** A `rows × cols` grid filled with `colour`. */
export function filledGrid(rows: number, cols: number, colour = 0): Grid {
  return Array.from({ length: rows }, () => new Array<number>(cols).fill(colour));
}
