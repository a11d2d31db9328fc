/** A plain-text table for the terminal (`validate`, `status`): columns padded to their widest cell. */
export function table(
  head: readonly string[],
  rows: readonly (readonly string[])[],
  paint: (cell: string, row: number, col: number) => string = (c) => c,
): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[], row: number): string =>
    cells
      .map((c, i) => paint(c.padEnd(widths[i]!), row, i))
      .join('  ')
      .trimEnd();
  return [line(head, -1), ...rows.map((r, i) => line(r, i))].join('\n') + '\n';
}
