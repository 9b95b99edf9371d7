/**
 * Grid encodings: how one grid becomes text for the model. Every encoded grid is self-delimiting (it ends
 * with a fixed terminator), so generation can stop as soon as the grid is complete and
 * {@link parseGrid} can tell exactly where it ends.
 *
 * - `arc24` — arc24's `GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))`: a fenced block with a
 *   shape header, then each row as its 1-based number, a space and the digits:
 *   `` ```grid shape: 3x3\n1 010\n2 111\n3 010\n``` ``. Made for large BPE vocabularies (Qwen splits it
 *   into one token per character).
 * - `compact` — the ARChitects' idea: one character per cell, rows separated by `\n`, ended by `.`:
 *   `010\n111\n010.`. Every prompt or answer in this format uses only {@link COMPACT_ALPHABET}, so a
 *   character-level vocabulary of 14 tokens is enough.
 *
 * @module
 */
import { z } from 'zod';
import { kindOf } from '../data/validate.js';
import { ValidationError } from '../errors.js';
import { type Grid, MAX_GRID_SIZE } from '../schemas.js';

/** Names of the grid formats. */
export const GridFormatNameSchema = z.enum(['arc24', 'compact'], {
  error: 'format must be "arc24" or "compact"',
});
/** Name of a grid format: `'arc24' | 'compact'`. */
export type GridFormatName = z.infer<typeof GridFormatNameSchema>;

/** One way of writing a grid as text. */
export interface GridEncoding {
  /** Registry name. */
  readonly name: GridFormatName;
  /** One-line human description. */
  readonly description: string;
  /**
   * The grid as text, terminator included. Throws {@link ValidationError} (path `[row][col]`) on a cell
   * that is not an integer 0–9.
   */
  encode(grid: Grid): string;
  /** Length in characters of `encode(g)` for any `rows × cols` grid (it does not depend on the colours). */
  encodedLength(rows: number, cols: number): number;
  /** The text every encoded grid ends with (a stop string for generation): `` \n``` `` or `.`. */
  readonly terminator: string;
  /**
   * Every character that prompts and answers of this format can contain, or `undefined` when prompts
   * may contain free text (`arc24`: headings and optional chat markup, all printable ASCII and `\n`).
   */
  readonly alphabet: string | undefined;
}

/** Cell value → digit character; anything else is not a valid cell. */
const DIGITS = '0123456789';

/** Single-character markers of the compact format. */
export const COMPACT_MARKERS = {
  /** Starts an example (and its input grid): `I\n<grid>`. */
  input: 'I',
  /** Starts an output grid: `O\n<grid>`. */
  output: 'O',
  /** Ends every grid (the answer's terminator). */
  end: '.',
} as const;

/**
 * Every character a compact prompt or answer can contain: the ten digits, `\n`, and the markers
 * `I` (example / input), `O` (output) and `.` (end of grid). All printable ASCII or `\n`.
 */
export const COMPACT_ALPHABET = `${DIGITS}\n${COMPACT_MARKERS.input}${COMPACT_MARKERS.output}${COMPACT_MARKERS.end}`;

/** Opening of an arc24 grid block, before `HxW`. */
export const ARC24_HEADER_PREFIX = '```grid shape: ';
/** Closing fence of an arc24 grid block (on its own line). */
export const ARC24_FENCE = '```';

function rowDigits(grid: Grid, r: number): string {
  const row = grid[r]!;
  let out = '';
  for (let c = 0; c < row.length; c++) {
    const ch = DIGITS[row[c]!];
    // `DIGITS[x]` is undefined for anything but the integers 0–9 (also for 1.5, -1, NaN, '3').
    if (ch === undefined || typeof row[c] !== 'number') {
      throw new ValidationError({
        issues: [{ path: `[${r}][${c}]`, message: `a cell must be an integer 0–9, got ${String(row[c])}` }],
      });
    }
    out += ch;
  }
  return out;
}

function shapeError(path: string, message: string): ValidationError {
  return new ValidationError({ issues: [{ path, message }] });
}

function checkShape(grid: Grid): void {
  // Grids from JavaScript callers or JSON may be anything; say what is wrong rather than throw a TypeError.
  if (!Array.isArray(grid)) throw shapeError('', `a grid must be an array of rows, got ${kindOf(grid)}`);
  if (grid.length === 0) throw shapeError('', 'cannot encode an empty grid');
  if (grid.length > MAX_GRID_SIZE) {
    throw shapeError('', `a grid has at most ${MAX_GRID_SIZE} rows, got ${grid.length}`);
  }
  for (let r = 0; r < grid.length; r++) {
    const row: unknown = grid[r];
    if (!Array.isArray(row))
      throw shapeError(`[${r}]`, `a row must be an array of cells, got ${kindOf(row)}`);
    if (r === 0 && row.length === 0) throw shapeError('', 'cannot encode an empty grid');
    if (r === 0 && row.length > MAX_GRID_SIZE) {
      throw shapeError('[0]', `a grid has at most ${MAX_GRID_SIZE} columns, got ${row.length}`);
    }
    if (row.length !== grid[0]!.length) {
      throw shapeError(
        `[${r}]`,
        `ragged grid: row ${r} has ${row.length} cells, row 0 has ${grid[0]!.length}`,
      );
    }
  }
}

/** arc24's grid text: shape header, numbered rows, closing fence. */
export const arc24Encoding: GridEncoding = {
  name: 'arc24',
  description: 'arc24: ```grid shape: HxW, then "<row number> <digits>" per row, then ```',
  terminator: `\n${ARC24_FENCE}`,
  alphabet: undefined,
  encode(grid: Grid): string {
    checkShape(grid);
    let out = `${ARC24_HEADER_PREFIX}${grid.length}x${grid[0]!.length}\n`;
    for (let r = 0; r < grid.length; r++) out += `${r + 1} ${rowDigits(grid, r)}\n`;
    return `${out}${ARC24_FENCE}`;
  },
  encodedLength(rows: number, cols: number): number {
    let numberDigits = 0;
    for (let r = 1; r <= rows; r++) numberDigits += String(r).length;
    const header = ARC24_HEADER_PREFIX.length + `${rows}x${cols}`.length + 1;
    // Each row: number, space, cells, newline; then the fence.
    return header + numberDigits + rows * (cols + 2) + ARC24_FENCE.length;
  },
};

/** One character per cell, `\n` between rows, `.` at the end. */
export const compactEncoding: GridEncoding = {
  name: 'compact',
  description: 'compact: one digit per cell, rows separated by \\n, grid ended by "."',
  terminator: COMPACT_MARKERS.end,
  alphabet: COMPACT_ALPHABET,
  encode(grid: Grid): string {
    checkShape(grid);
    const rows: string[] = [];
    for (let r = 0; r < grid.length; r++) rows.push(rowDigits(grid, r));
    return `${rows.join('\n')}${COMPACT_MARKERS.end}`;
  },
  encodedLength(rows: number, cols: number): number {
    return rows * (cols + 1);
  },
};

/** Every grid encoding, by name. */
export const ENCODINGS: Readonly<Record<GridFormatName, GridEncoding>> = Object.freeze({
  arc24: arc24Encoding,
  compact: compactEncoding,
});

/** The encoding called `name`; throws {@link ValidationError} for an unknown name. */
export function getEncoding(name: GridFormatName): GridEncoding {
  const encoding = Object.hasOwn(ENCODINGS, name) ? ENCODINGS[name] : undefined;
  if (encoding === undefined) {
    throw new ValidationError({
      issues: [
        { path: 'format', message: `unknown grid format ${JSON.stringify(name)} (use "arc24" or "compact")` },
      ],
    });
  }
  return encoding;
}
