/** Markdown helpers shared by the benchmark reports (docs/token-budget.md, docs/results.md). */

/** A Markdown table; `right` marks right-aligned columns. */
export function mdTable(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  right: readonly boolean[],
): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (right[i] ? '---:' : '---'))), ...rows.map(line)].join(
    '\n',
  );
}
