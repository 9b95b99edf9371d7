/**
 * A tiny aligned-table formatter for human CLI output.
 *
 * @module
 */
import { z } from 'zod';
import { parseOptions } from '../data/validate.js';

/** Options of {@link formatTable}. */
export const TableOptionsSchema = z.object({
  /**
   * Alignment per column; missing entries are `left`.
   * @default []
   */
  align: z.array(z.enum(['left', 'right'])).default([]),
  /**
   * Spaces between columns.
   * @default 2
   */
  gap: z.number().int().nonnegative().default(2),
  /**
   * Draw a `---` rule under the header.
   * @default true
   */
  rule: z.boolean().default(true),
});
/** Options of {@link formatTable}. */
export type TableOptions = z.input<typeof TableOptionsSchema>;

/**
 * Lays out `header` and `rows` as aligned columns (padded to the widest cell, trailing spaces trimmed),
 * one line per row, without a final newline. Rows shorter than the header are padded with empty cells.
 */
export function formatTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  options?: TableOptions,
): string {
  const o = parseOptions(TableOptionsSchema, options, 'formatTable');
  const nCols = Math.max(header.length, ...rows.map((r) => r.length));
  const widths = Array.from({ length: nCols }, (_, c) =>
    Math.max(header[c]?.length ?? 0, ...rows.map((r) => r[c]?.length ?? 0)),
  );
  const sep = ' '.repeat(o.gap);
  const line = (cells: readonly string[]): string =>
    widths
      .map((w, c) => {
        const cell = cells[c] ?? '';
        return o.align[c] === 'right' ? cell.padStart(w) : cell.padEnd(w);
      })
      .join(sep)
      .trimEnd();
  const out = [line(header)];
  if (o.rule) out.push(widths.map((w) => '-'.repeat(w)).join(sep));
  for (const row of rows) out.push(line(row));
  return out.join('\n');
}

/** Formats a fraction in [0, 1] as a percentage, e.g. `0.125` → `12.5%`. */
export function formatPercent(value: number, digits = 1): string {
  return `${(value * 100).toFixed(digits)}%`;
}
