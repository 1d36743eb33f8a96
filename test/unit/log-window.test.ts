import t from 'tap'
import { byteBoundedEnd, type ChangeRow } from '../../src/storage/store'

const row = (seq: number, bytes: number): ChangeRow => ({ key: `k${seq}`, value: Buffer.alloc(bytes), contentType: 'application/octet-stream', version: `v${seq}`, seq, deleted: false, expiresAt: null })

t.test('a shipment window ends by value bytes, always carrying at least one row', async (t) => {
  const table: Array<{ name: string, rows: ChangeRow[], max: number, want: number }> = [
    { name: 'no rows', rows: [], max: 10, want: Infinity },
    { name: 'all fit', rows: [row(1, 3), row(2, 3), row(3, 4)], max: 10, want: Infinity },
    { name: 'the third crosses: end after the second', rows: [row(1, 4), row(2, 4), row(3, 4)], max: 10, want: 2 },
    { name: 'a first row larger than the budget goes alone', rows: [row(5, 100), row(6, 1)], max: 10, want: 5 },
    { name: 'the second crosses', rows: [row(7, 6), row(9, 6)], max: 10, want: 7 }
  ]
  for (const r of table) t.equal(byteBoundedEnd(r.rows, r.max), r.want, r.name)
})
