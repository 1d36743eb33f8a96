import t from 'tap'
import { ruleOf } from '../../src/auth/client-guard'
import { ADMIN, DASHBOARD, switchoverPath } from '../../src/protocol/wire'

// Which role a client token needs for each router route: every admin call, the switchover included, needs `admin`.
t.test('ruleOf: admin routes need the admin role', async (t) => {
  const rows: Array<[string, string]> = [
    [ADMIN.groups, 'admin'],
    [`${ADMIN.groups}/g1`, 'admin'],
    [`${ADMIN.groups}/g1/replicas?url=x`, 'admin'],
    [switchoverPath('g1'), 'admin'],
    [ADMIN.rebalance, 'admin'],
    ['/cluster', 'read'],
    ['/healthz', 'open'],
    [DASHBOARD.page, 'open'],
    [`${DASHBOARD.page}/app.js`, 'open'],
    [DASHBOARD.events, 'read'],
    ['/internal/replication/handoff', 'peer']
  ]
  for (const [url, rule] of rows) t.equal(ruleOf(url), rule, url)
})
