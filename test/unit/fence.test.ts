import t from 'tap'
import { fenceOf, judgeFence } from '../../src/registry/fence'

t.test('judgeFence: older fences are refused, newer ones say so', async (t) => {
  const table: Array<{ installed: number | undefined, claimed: number, want: string }> = [
    { installed: undefined, claimed: 0, want: 'ok' },
    { installed: undefined, claimed: 4, want: 'newer' },
    { installed: 4, claimed: 4, want: 'ok' },
    { installed: 4, claimed: 9, want: 'newer' },
    { installed: 4, claimed: 3, want: 'refused' },
    { installed: 4, claimed: 0, want: 'refused' }
  ]
  for (const r of table) {
    const v = judgeFence(r.installed, r.claimed)
    t.equal(v.ok ? (v.newer ? 'newer' : 'ok') : 'refused', r.want, `installed ${String(r.installed)}, claimed ${r.claimed}`)
  }
})

t.test('fenceOf: anything but a non-negative safe integer is 0', async (t) => {
  for (const [raw, want] of [[7, 7], [0, 0], [-1, 0], [1.5, 0], ['7', 0], [null, 0], [undefined, 0], [2 ** 60, 0]] as Array<[unknown, number]>) {
    t.equal(fenceOf(raw), want, JSON.stringify(raw) ?? 'undefined')
  }
})
