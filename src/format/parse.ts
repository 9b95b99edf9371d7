/**
 * Parsing model output back into grids. {@link parseGrid} never throws on any string: every failure is
 * returned as data with a {@link ParseFailureReason}, because malformed generations are normal and only
 * count as unanswered.
 *
 * Lenient where it is harmless — leading whitespace, `\r\n` line ends, text after the terminator (it is
 * not consumed), arc24 row numbers that are out of sequence (arc24 ignores them too), one empty line
 * before a compact `.`. Strict where it matters — ragged rows, a header shape that disagrees with the
 * rows, a missing terminator (a generation cut off by the token limit) and anything over 30 × 30 fail.
 *
 * @module
 */

import type { Grid } from '../schemas.js';
import { MAX_GRID_SIZE } from '../schemas.js';
import { ARC24_FENCE, ARC24_HEADER_PREFIX, COMPACT_MARKERS, type GridFormatName } from './encodings.js';

/** Why a text did not parse as a grid. */
export type ParseFailureReason =
  /** Nothing but whitespace (or not a string at all). */
  | 'empty'
  /** arc24: the first line is not a `` ```grid shape: HxW `` header. */
  | 'bad_header'
  /** The grid ended before its first row. */
  | 'no_rows'
  /** arc24: a row line is not `<number> <digits>`. */
  | 'bad_row'
  /** A cell is not a digit 0–9 (or a character outside the format). */
  | 'bad_cell'
  /** Rows of different widths. */
  | 'ragged'
  /** More than 30 rows or columns. */
  | 'too_large'
  /** arc24: the rows do not match the header's `HxW`. */
  | 'header_mismatch'
  /** The text ends before the grid's terminator (closing fence / `.`): a truncated generation. */
  | 'unterminated';

/** Outcome of {@link parseGrid}. */
export type ParseResult =
  | {
      /** Discriminant: the text parsed. */
      readonly ok: true;
      /** The parsed grid. */
      readonly grid: Grid;
      /** Characters of the text that the grid used, terminator included (text after it is ignored). */
      readonly consumed: number;
    }
  | {
      /** Discriminant: the text did not parse. */
      readonly ok: false;
      /** Machine-readable cause. */
      readonly reason: ParseFailureReason;
      /** Human-readable detail. */
      readonly message: string;
    };

function fail(reason: ParseFailureReason, message: string): ParseResult {
  return { ok: false, reason, message };
}

function isDigitCode(code: number): boolean {
  return code >= 48 && code <= 57;
}

function skipWhitespace(text: string, pos: number): number {
  while (pos < text.length) {
    const ch = text[pos];
    if (ch !== ' ' && ch !== '\t' && ch !== '\r' && ch !== '\n') break;
    pos++;
  }
  return pos;
}

/** Shortens text for error messages. */
function quote(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text);
}

/** One line of the text: `[start, end)` without the line break; `next` is after it, or -1 at the end of the text. */
interface Line {
  readonly text: string;
  readonly start: number;
  readonly terminated: boolean;
  readonly next: number;
}

function readLine(text: string, pos: number): Line {
  const nl = text.indexOf('\n', pos);
  if (nl === -1) {
    // Cap what we copy: no valid line is longer than a 30-cell row plus its number.
    return { text: text.slice(pos, pos + 256), start: pos, terminated: false, next: -1 };
  }
  const end = nl > pos && text[nl - 1] === '\r' ? nl - 1 : nl;
  return { text: text.slice(pos, Math.min(end, pos + 256)), start: pos, terminated: true, next: nl + 1 };
}

const HEADER_RE = /^```grid shape:[ \t]*(\d{1,6})[ \t]*x[ \t]*(\d{1,6})[ \t]*$/;

function parseArc24(text: string): ParseResult {
  let pos = skipWhitespace(text, 0);
  if (pos >= text.length) return fail('empty', 'no grid: the text is empty');
  const header = readLine(text, pos);
  if (!header.terminated) {
    const partial = header.text.trimEnd();
    const isPrefix =
      ARC24_HEADER_PREFIX.startsWith(partial) ||
      (partial.startsWith(ARC24_HEADER_PREFIX) &&
        /^[\d \tx]*$/.test(partial.slice(ARC24_HEADER_PREFIX.length)));
    return isPrefix
      ? fail('unterminated', 'the text ends inside the grid header')
      : fail('bad_header', `expected a "${ARC24_HEADER_PREFIX}HxW" header, got ${quote(header.text)}`);
  }
  const match = HEADER_RE.exec(header.text);
  if (match === null) {
    return fail('bad_header', `expected a "${ARC24_HEADER_PREFIX}HxW" header, got ${quote(header.text)}`);
  }
  const rows = Number(match[1]);
  const cols = Number(match[2]);
  if (rows < 1 || cols < 1) return fail('bad_header', `the header shape ${rows}x${cols} is empty`);
  if (rows > MAX_GRID_SIZE || cols > MAX_GRID_SIZE) {
    return fail('too_large', `the header shape ${rows}x${cols} is over ${MAX_GRID_SIZE}x${MAX_GRID_SIZE}`);
  }
  pos = header.next;

  const grid: Grid = [];
  for (;;) {
    if (pos >= text.length)
      return fail('unterminated', `the text ends after ${grid.length} rows, before the closing fence`);
    const line = readLine(text, pos);
    if (line.text.startsWith(ARC24_FENCE)) {
      if (grid.length === 0) return fail('no_rows', 'the grid block has no rows');
      const width = grid[0]!.length;
      if (grid.length !== rows || width !== cols) {
        return fail(
          'header_mismatch',
          `the header says ${rows}x${cols} but the rows make ${grid.length}x${width}`,
        );
      }
      return { ok: true, grid, consumed: line.start + ARC24_FENCE.length };
    }
    if (!line.terminated && ARC24_FENCE.startsWith(line.text)) {
      return fail('unterminated', 'the text ends inside the closing fence');
    }
    const space = line.text.indexOf(' ');
    if (space < 1 || space > 3 || !/^\d+$/.test(line.text.slice(0, space))) {
      return fail(
        'bad_row',
        `row ${grid.length + 1}: expected "<row number> <digits>", got ${quote(line.text)}`,
      );
    }
    const cellsText = line.text.slice(space + 1);
    if (cellsText.length === 0) return fail('bad_row', `row ${grid.length + 1} has no cells`);
    const row: number[] = [];
    for (let i = 0; i < cellsText.length; i++) {
      const code = cellsText.charCodeAt(i);
      if (!isDigitCode(code)) {
        return fail(
          'bad_cell',
          `row ${grid.length + 1}, column ${i + 1}: ${quote(cellsText[i]!)} is not a digit 0–9`,
        );
      }
      row.push(code - 48);
    }
    if (!line.terminated) return fail('unterminated', `the text ends inside row ${grid.length + 1}`);
    if (row.length > MAX_GRID_SIZE)
      return fail('too_large', `row ${grid.length + 1} has over ${MAX_GRID_SIZE} cells`);
    if (grid.length > 0 && row.length !== grid[0]!.length) {
      return fail('ragged', `row ${grid.length + 1} has ${row.length} cells, row 1 has ${grid[0]!.length}`);
    }
    grid.push(row);
    if (grid.length > MAX_GRID_SIZE) return fail('too_large', `the grid has over ${MAX_GRID_SIZE} rows`);
    pos = line.next;
  }
}

function parseCompact(text: string): ParseResult {
  const start = skipWhitespace(text, 0);
  if (start >= text.length) return fail('empty', 'no grid: the text is empty');
  const grid: Grid = [];
  let row: number[] = [];
  const endRow = (): ParseResult | undefined => {
    if (row.length > MAX_GRID_SIZE)
      return fail('too_large', `row ${grid.length + 1} has over ${MAX_GRID_SIZE} cells`);
    if (grid.length > 0 && row.length !== grid[0]!.length) {
      return fail('ragged', `row ${grid.length + 1} has ${row.length} cells, row 1 has ${grid[0]!.length}`);
    }
    grid.push(row);
    row = [];
    if (grid.length > MAX_GRID_SIZE) return fail('too_large', `the grid has over ${MAX_GRID_SIZE} rows`);
    return undefined;
  };
  for (let i = start; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (isDigitCode(code)) {
      row.push(code - 48);
      if (row.length > MAX_GRID_SIZE)
        return fail('too_large', `row ${grid.length + 1} has over ${MAX_GRID_SIZE} cells`);
      continue;
    }
    const ch = text[i]!;
    if (ch === '\r' && text[i + 1] === '\n') continue;
    if (ch === '\n') {
      if (row.length === 0 && grid.length === 0) return fail('no_rows', 'the grid starts with an empty row');
      // An empty last row just before the end marker is a harmless trailing newline.
      if (row.length === 0 && text[i + 1] === COMPACT_MARKERS.end) continue;
      const problem = endRow();
      if (problem !== undefined) return problem;
      continue;
    }
    if (ch === COMPACT_MARKERS.end) {
      if (row.length === 0 && grid.length === 0) return fail('no_rows', 'the grid has no rows');
      if (row.length > 0) {
        const problem = endRow();
        if (problem !== undefined) return problem;
      }
      return { ok: true, grid, consumed: i + 1 };
    }
    return fail(
      'bad_cell',
      `row ${grid.length + 1}, column ${row.length + 1}: ${quote(ch)} is not a digit 0–9`,
    );
  }
  return fail('unterminated', `the text ends after ${grid.length} rows, before "${COMPACT_MARKERS.end}"`);
}

/**
 * Parses the grid at the start of `text` (an answer as generated, or an encoded grid) in `format`.
 * Never throws: any string (or non-string) gives a {@link ParseResult}. On success `consumed` says
 * where the grid's terminator ends; anything after it is ignored.
 */
export function parseGrid(text: string, format: GridFormatName): ParseResult {
  if (typeof text !== 'string') return fail('empty', `expected a string, got ${typeof text}`);
  try {
    if (format === 'compact') return parseCompact(text);
    if (format === 'arc24') return parseArc24(text);
    return fail('bad_header', `unknown grid format ${quote(String(format))}`);
  } catch (error) {
    // Defensive: the parsers are written not to throw; a bug must still not crash a whole run.
    return fail(
      'bad_cell',
      `internal parse error: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}
