import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ValidationError } from '../src/errors.js';
import {
  COMPACT_ALPHABET,
  COMPACT_MARKERS,
  ENCODINGS,
  type GridFormatName,
  GridFormatNameSchema,
  getEncoding,
} from '../src/format/encodings.js';
import { parseGrid } from '../src/format/parse.js';
import {
  answerTextFor,
  buildInferencePrompt,
  buildTrainingText,
  largestAnswerShape,
  maxAnswerChars,
} from '../src/format/prompt.js';
import { gridsEqual } from '../src/grid.js';
import type { Example, Grid, Task } from '../src/schemas.js';
import { loadArc1Training } from './helpers.js';

const FORMATS: readonly GridFormatName[] = ['arc24', 'compact'];

const TRAINING = loadArc1Training();

function allGrids(task: Task): Grid[] {
  return [
    ...task.train.flatMap((p) => [p.input, p.output]),
    ...task.test.flatMap((t) => (t.output ? [t.input, t.output] : [t.input])),
  ];
}

/** Random valid grids, 1–30 on each side. */
const gridArb: fc.Arbitrary<Grid> = fc
  .record({ rows: fc.integer({ min: 1, max: 30 }), cols: fc.integer({ min: 1, max: 30 }) })
  .chain(({ rows, cols }) =>
    fc.array(fc.array(fc.integer({ min: 0, max: 9 }), { minLength: cols, maxLength: cols }), {
      minLength: rows,
      maxLength: rows,
    }),
  );
const formatArb = fc.constantFrom<GridFormatName>(...FORMATS);

/** Checks the parser's internal safety net never fired (it would hide a throwing bug). */
function expectNoInternalError(result: ReturnType<typeof parseGrid>): void {
  if (!result.ok) expect(result.message).not.toContain('internal parse error');
}

/** A successful parse must be a valid grid. */
function expectValidGrid(grid: Grid): void {
  expect(grid.length).toBeGreaterThanOrEqual(1);
  expect(grid.length).toBeLessThanOrEqual(30);
  const width = grid[0]!.length;
  expect(width).toBeGreaterThanOrEqual(1);
  expect(width).toBeLessThanOrEqual(30);
  for (const row of grid) {
    expect(row.length).toBe(width);
    for (const cell of row) expect(Number.isInteger(cell) && cell >= 0 && cell <= 9).toBe(true);
  }
}

describe('encodings', () => {
  it('writes arc24 grids as a fenced block with a shape header and numbered rows', () => {
    expect(
      ENCODINGS.arc24.encode([
        [0, 1, 0],
        [1, 1, 1],
        [0, 1, 0],
      ]),
    ).toBe('```grid shape: 3x3\n1 010\n2 111\n3 010\n```');
  });

  it('writes compact grids one character per cell, rows split by \\n, ended by "."', () => {
    expect(
      ENCODINGS.compact.encode([
        [0, 1, 0],
        [1, 1, 1],
      ]),
    ).toBe('010\n111.');
  });

  it('has a small printable-ASCII compact alphabet without duplicates', () => {
    expect(new Set(COMPACT_ALPHABET).size).toBe(COMPACT_ALPHABET.length);
    for (const ch of COMPACT_ALPHABET) expect(ch === '\n' || (ch >= ' ' && ch <= '~')).toBe(true);
    for (const marker of Object.values(COMPACT_MARKERS)) expect(COMPACT_ALPHABET).toContain(marker);
    expect(COMPACT_ALPHABET.length).toBeLessThanOrEqual(16);
  });

  it('round-trips every ARC-AGI-1 training grid in both formats, with exact lengths', () => {
    let checked = 0;
    for (const [id, task] of TRAINING) {
      for (const grid of allGrids(task)) {
        for (const format of FORMATS) {
          const encoding = getEncoding(format);
          const text = encoding.encode(grid);
          expect(text.length, `${id} ${format}`).toBe(encoding.encodedLength(grid.length, grid[0]!.length));
          expect(text.endsWith(encoding.terminator)).toBe(true);
          const parsed = parseGrid(text, format);
          if (!parsed.ok) throw new Error(`${id} ${format}: ${parsed.reason} ${parsed.message}`);
          expect(gridsEqual(parsed.grid, grid), `${id} ${format}`).toBe(true);
          expect(parsed.consumed).toBe(text.length);
          checked++;
        }
      }
    }
    expect(checked).toBeGreaterThan(6000);
  });

  it('rejects cells that are not integers 0–9, naming the cell', () => {
    for (const format of FORMATS) {
      for (const bad of [10, -1, 1.5, Number.NaN]) {
        const error = (() => {
          try {
            getEncoding(format).encode([
              [0, 0],
              [0, bad],
            ]);
          } catch (e) {
            return e;
          }
        })();
        expect(error).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).path).toBe('[1][1]');
      }
      expect(() => getEncoding(format).encode([[0, 0], [0]])).toThrow(ValidationError);
      expect(() => getEncoding(format).encode([])).toThrow(ValidationError);
    }
  });

  it('rejects unknown format names', () => {
    expect(() => getEncoding('json' as GridFormatName)).toThrow(ValidationError);
    expect(() => getEncoding('toString' as GridFormatName)).toThrow(ValidationError);
    expect(GridFormatNameSchema.safeParse('compact').success).toBe(true);
    expect(GridFormatNameSchema.safeParse('json').success).toBe(false);
  });
});

describe('parseGrid', () => {
  it('never throws on arbitrary strings, and any success is a valid grid', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), formatArb, (text, format) => {
        const result = parseGrid(text, format);
        expectNoInternalError(result);
        if (result.ok) {
          expectValidGrid(result.grid);
          expect(result.consumed).toBeLessThanOrEqual(text.length);
        } else {
          expect(typeof result.message).toBe('string');
        }
      }),
      { numRuns: 500 },
    );
  });

  it('never throws on strings built from the formats own characters', () => {
    const arc24Chars = fc.constantFrom(
      '0',
      '1',
      '9',
      ' ',
      '\n',
      '`',
      '```',
      '```grid shape: ',
      'x',
      '3',
      '\r\n',
    );
    const compactChars = fc.constantFrom(...COMPACT_ALPHABET, '\r', ' ');
    fc.assert(
      fc.property(
        fc.string({ unit: arc24Chars, maxLength: 80 }),
        fc.string({ unit: compactChars, maxLength: 80 }),
        (a, c) => {
          for (const [text, format] of [
            [a, 'arc24'],
            [`\`\`\`grid shape: 2x2\n${a}`, 'arc24'],
            [c, 'compact'],
          ] as const) {
            const result = parseGrid(text, format);
            expectNoInternalError(result);
            if (result.ok) expectValidGrid(result.grid);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('fails, without throwing, on every truncation of a valid encoding', () => {
    fc.assert(
      fc.property(gridArb, formatArb, fc.nat(), (grid, format, cut) => {
        const text = answerTextFor(grid, format);
        const result = parseGrid(text.slice(0, cut % text.length), format);
        expectNoInternalError(result);
        expect(result.ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it('never throws on corrupted encodings, and any success is a valid grid', () => {
    fc.assert(
      fc.property(
        gridArb,
        formatArb,
        fc.array(fc.tuple(fc.nat(), fc.string({ unit: 'binary', maxLength: 3 }), fc.nat({ max: 3 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (grid, format, edits) => {
          let text = answerTextFor(grid, format);
          for (const [at, insert, remove] of edits) {
            const i = at % (text.length + 1);
            text = text.slice(0, i) + insert + text.slice(i + remove);
          }
          const result = parseGrid(text, format);
          expectNoInternalError(result);
          if (result.ok) expectValidGrid(result.grid);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('round-trips random grids, ignoring leading whitespace, \\r\\n and trailing text', () => {
    fc.assert(
      fc.property(gridArb, formatArb, fc.string({ maxLength: 20 }), (grid, format, tail) => {
        const text = answerTextFor(grid, format);
        for (const variant of [text, `\n  ${text}`, text.replaceAll('\n', '\r\n')]) {
          const result = parseGrid(variant + tail, format);
          if (!result.ok) throw new Error(`${result.reason}: ${result.message}`);
          expect(result.grid).toEqual(grid);
          expect(result.consumed).toBe(variant.length);
        }
      }),
      { numRuns: 200 },
    );
  });

  it.each([
    ['', 'empty'],
    [' \n\t', 'empty'],
    ['grid shape: 2x2\n1 00\n2 00\n```', 'bad_header'],
    ['```grid\n00\n00\n```', 'bad_header'],
    ['```grid shape: 0x2\n```', 'bad_header'],
    ['```grid shape: 2x2\n```', 'no_rows'],
    ['```grid shape: 2x2\n00\n00\n```', 'bad_row'],
    ['```grid shape: 2x2\n1 0a\n2 00\n```', 'bad_cell'],
    ['```grid shape: 2x2\n1 00\n2 000\n```', 'ragged'],
    ['```grid shape: 2x2\n1 00\n2 00\n3 00\n```', 'header_mismatch'],
    ['```grid shape: 3x2\n1 00\n2 00\n```', 'header_mismatch'],
    ['```grid shape: 31x2\n1 00\n```', 'too_large'],
    ['```grid shape: 2x2\n1 00\n2 00\n', 'unterminated'],
    ['```grid shape: 2x2\n1 00\n2 00', 'unterminated'],
    ['```grid sha', 'unterminated'],
  ] as const)('arc24 %j fails with %s', (text, reason) => {
    const result = parseGrid(text, 'arc24');
    expect(result.ok ? 'ok' : result.reason).toBe(reason);
  });

  it.each([
    ['', 'empty'],
    ['.', 'no_rows'],
    ['01\n0a.', 'bad_cell'],
    ['01\nO.', 'bad_cell'],
    ['01\n012.', 'ragged'],
    ['01\n\n01.', 'ragged'],
    [`${'0'.repeat(31)}.`, 'too_large'],
    [`${'0\n'.repeat(31)}.`, 'too_large'],
    ['01\n01', 'unterminated'],
    ['01\n01\n', 'unterminated'],
  ] as const)('compact %j fails with %s', (text, reason) => {
    const result = parseGrid(text, 'compact');
    expect(result.ok ? 'ok' : result.reason).toBe(reason);
  });

  it('accepts a trailing newline before the compact end marker and stops at the terminator', () => {
    expect(parseGrid('01\n10\n.I\n', 'compact')).toEqual({
      ok: true,
      grid: [
        [0, 1],
        [1, 0],
      ],
      consumed: 7,
    });
    const arc24 = '```grid shape: 1x2\n7 01\n```<|im_end|>';
    expect(parseGrid(arc24, 'arc24')).toEqual({ ok: true, grid: [[0, 1]], consumed: arc24.indexOf('<') });
  });

  it('returns a failure for non-string input', () => {
    expect(parseGrid(undefined as unknown as string, 'arc24').ok).toBe(false);
    expect(parseGrid('01.', 'nope' as GridFormatName).ok).toBe(false);
  });
});

describe('prompts', () => {
  const train: Example[] = [
    { input: [[1, 0]], output: [[0, 1]] },
    { input: [[2], [0]], output: [[0], [2]] },
  ];
  const target: Example = { input: [[3, 3, 0]], output: [[0, 3, 3]] };

  it('lays out the arc24 prompt as arc24 does, ending where the answer starts', () => {
    const g = (grid: Grid) => ENCODINGS.arc24.encode(grid);
    const expected =
      `## Example 1\n\n### Input\n\n${g([[1, 0]])}\n\n### Output\n\n${g([[0, 1]])}\n\n` +
      `## Example 2\n\n### Input\n\n${g([[2], [0]])}\n\n### Output\n\n${g([[0], [2]])}\n\n` +
      `## Test case\n\n### Input\n\n${g([[3, 3, 0]])}\n\n### Output\n\n`;
    expect(buildInferencePrompt(train, target.input)).toBe(expected);
    expect(buildInferencePrompt(train, target.input, { format: 'arc24' })).toBe(expected);
  });

  it('lays out the compact prompt with I/O markers and only compact characters', () => {
    expect(buildInferencePrompt(train, target.input, 'compact')).toBe(
      'I\n10.\nO\n01.\nI\n2\n0.\nO\n0\n2.\nI\n330.\nO\n',
    );
    for (const task of [...TRAINING.values()].slice(0, 100)) {
      const t = buildTrainingText(task.train, task.train[0]!, 'compact');
      const outside = [...new Set(t.text)].filter((ch) => !COMPACT_ALPHABET.includes(ch));
      expect(outside).toEqual([]);
    }
  });

  it('wraps arc24 in the Qwen chat template with style chatml', () => {
    const t = buildTrainingText(train, target, { format: 'arc24', style: 'chatml' });
    expect(t.prompt.startsWith('<|im_start|>system\n')).toBe(true);
    expect(t.prompt).toContain(`${ENCODINGS.arc24.encode(target.input)}\n<|im_end|>\n`);
    expect(t.prompt.endsWith('<|im_end|>\n<|im_start|>assistant\n### Output\n\n')).toBe(true);
    expect(t.answer).toBe(ENCODINGS.arc24.encode(target.output));
  });

  it('rejects chatml with the compact format and unknown formats, naming the option', () => {
    const error = (() => {
      try {
        buildInferencePrompt(train, target.input, { format: 'compact', style: 'chatml' });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe('style');
    expect(() => buildInferencePrompt(train, target.input, 'json' as GridFormatName)).toThrow(
      ValidationError,
    );
  });

  it('puts exactly the answer in the answer span, and the answer parses back to the target', () => {
    for (const [id, task] of [...TRAINING].slice(0, 60)) {
      for (const format of ['arc24', 'compact', { format: 'arc24', style: 'chatml' }] as const) {
        const target0 = task.train.at(-1)!;
        const context = task.train.slice(0, -1);
        const t = buildTrainingText(context, target0, format);
        expect(t.text).toBe(t.prompt + t.answer);
        expect(t.prompt).toBe(buildInferencePrompt(context, target0.input, format));
        expect(t.text.slice(...t.answerSpan)).toBe(t.answer);
        expect(t.answerSpan[1]).toBe(t.text.length);
        const parsed = parseGrid(
          t.text.slice(t.answerSpan[0]),
          typeof format === 'string' ? format : format.format,
        );
        if (!parsed.ok) throw new Error(`${id}: ${parsed.message}`);
        expect(parsed.grid).toEqual(target0.output);
        expect(parsed.consumed).toBe(t.answer.length);
      }
    }
  });

  it('sizes answers: maxAnswerChars matches answerTextFor, largestAnswerShape takes outputs and test inputs', () => {
    for (const format of FORMATS) {
      for (const [r, c] of [
        [1, 1],
        [9, 10],
        [30, 30],
      ] as const) {
        const grid = Array.from({ length: r }, () => new Array<number>(c).fill(5));
        expect(maxAnswerChars(format, r, c)).toBe(answerTextFor(grid, format).length);
      }
    }
    const fill = (r: number, c: number) => Array.from({ length: r }, () => new Array<number>(c).fill(1));
    const task: Task = {
      train: [
        { input: fill(3, 5), output: fill(3, 1) },
        { input: fill(1, 2), output: fill(1, 2) },
      ],
      test: [{ input: fill(4, 1) }],
    };
    // Train inputs do not count (the widest grid is the 5-column train input); nothing grows here.
    expect(largestAnswerShape(task)).toEqual([4, 2]);
    // An upscaling task: its answer is larger than any grid it shows. Each test input grows as the train
    // pairs do, per dimension (rows ×3 from the first pair, columns ×2 from the second), at most 30.
    const upscale: Task = {
      train: [
        { input: fill(2, 2), output: fill(6, 2) },
        { input: fill(1, 3), output: fill(1, 6) },
      ],
      test: [{ input: fill(4, 3) }, { input: fill(1, 20) }],
    };
    expect(largestAnswerShape(upscale)).toEqual([12, 30]);
    // Exact: 21 rows grown by 9/7 are 27 (as a float product, 9/7 × 21 is 27.000000000000004).
    const ratio: Task = {
      train: [{ input: fill(7, 1), output: fill(9, 1) }],
      test: [{ input: fill(21, 1) }],
    };
    expect(largestAnswerShape(ratio)).toEqual([27, 1]);
  });
});
