import t from 'tap'
import { judgeTtlRead, type TtlRead, type TtlWrite } from '../harness/ttl-history'

t.test('the TTL history check judges each read against the window its write could expire in', async (t) => {
  const w: TtlWrite = { key: 'k', value: 'v', ttlMs: 1000, start: 100, end: 150, acked: true }
  const read = (start: number, end: number, value: string | null | undefined): TtlRead => ({ key: 'k', path: 'p', start, end, value })
  const table: Array<{ name: string, write?: TtlWrite, read: TtlRead, want: string }> = [
    { name: 'value well before expiry', read: read(200, 300, 'v'), want: 'ok' },
    { name: 'value in the window where it may have expired', read: read(1120, 1160, 'v'), want: 'ok' },
    { name: 'value read starting exactly at the last possible expiry', read: read(1150, 1160, 'v'), want: 'expired_value_read' },
    { name: 'value long after', read: read(5000, 5010, 'v'), want: 'expired_value_read' },
    { name: 'absent after the last possible expiry', read: read(1150, 1160, null), want: 'ok' },
    { name: 'absent, ending before the first possible expiry', read: read(200, 1099, null), want: 'early_expiry' },
    { name: 'absent, ending at the first possible expiry', read: read(200, 1100, null), want: 'ok' },
    { name: 'absent, started before the write was acknowledged', read: read(120, 140, null), want: 'ok' },
    { name: 'absent early, but the write was never acknowledged', write: { ...w, acked: false }, read: read(200, 300, null), want: 'ok' },
    { name: 'another value', read: read(200, 300, 'x'), want: 'wrong_value' },
    { name: 'no answer', read: read(200, 300, undefined), want: 'unknown' }
  ]
  for (const r of table) t.equal(judgeTtlRead(r.write ?? w, r.read), r.want, r.name)
})
