/**
 * Tables as `etcdctl ... -w table` draws them: a border line, the header, a border line,
 * the rows, a border line; cells padded to their column's width. Pure (unit-tested in
 * test/unit/cli-table.test.ts).
 */

export type Align = 'left' | 'right'

export interface Column<Row> {
  header: string
  cell: (row: Row) => string
  align?: Align
}

/** Display width of a cell: its code points (the CLI prints no wide characters). */
function width (text: string): number {
  return [...text].length
}

function pad (text: string, size: number, align: Align): string {
  const fill = ' '.repeat(Math.max(0, size - width(text)))
  return align === 'right' ? fill + text : text + fill
}

/** The rows as a bordered table, one line per row, with a trailing newline. */
export function renderTable<Row> (columns: ReadonlyArray<Column<Row>>, rows: readonly Row[]): string {
  const cells = rows.map((r) => columns.map((c) => c.cell(r).replace(/[\r\n|]/g, ' ')))
  const sizes = columns.map((c, i) => Math.max(width(c.header), ...cells.map((r) => width(r[i] ?? ''))))
  const border = '+' + sizes.map((s) => '-'.repeat(s + 2)).join('+') + '+'
  const line = (values: readonly string[], align: (i: number) => Align): string =>
    '|' + values.map((v, i) => ` ${pad(v, sizes[i] ?? 0, align(i))} `).join('|') + '|'
  return [
    border,
    line(columns.map((c) => c.header), () => 'left'),
    border,
    ...cells.map((r) => line(r, (i) => columns[i]?.align ?? 'left')),
    border
  ].join('\n') + '\n'
}
