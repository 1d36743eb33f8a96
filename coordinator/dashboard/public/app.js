// The shardkv dashboard: reads the router's snapshot stream (GET /ui/events, shapes in
// src/protocol/dashboard.ts) and draws it. Plain browser JavaScript, no build step.
//
// The stream is read with fetch() rather than EventSource, which cannot send headers: the
// token goes in the Authorization header, never in a URL. It is kept in sessionStorage
// (this tab only). Everything from the server is put in the page as text (textContent,
// attributes), never as HTML; the page's CSP allows only its own script and style.

const TOKEN_KEY = 'shardkv.dashboard.token'
const EVENTS = '/ui/events'
const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#bab0ac']
const SVG_NS = 'http://www.w3.org/2000/svg'

const state = { viewer: null, snapshot: null, generation: 0, controller: null, colors: new Map() }
const $ = (id) => document.getElementById(id)
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

// --- DOM helpers --------------------------------------------------------------------

/** An element with attributes (null/false skipped) and children (strings become text). */
function h (tag, attrs = {}, ...children) {
  const svg = ['svg', 'path', 'circle', 'text', 'g', 'rect', 'title'].includes(tag)
  const el = svg ? document.createElementNS(SVG_NS, tag) : document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? '' : String(v))
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c)
  return el
}

/**
 * Makes `to` look like `from`, keeping `to`'s nodes where the structure is the same: a
 * button under the pointer is not replaced by a snapshot that did not change it.
 */
function morph (to, from) {
  if (to.nodeType !== from.nodeType || to.nodeName !== from.nodeName || (to.getAttribute?.('data-key') ?? null) !== (from.getAttribute?.('data-key') ?? null)) {
    to.replaceWith(from)
    return
  }
  if (to.nodeType !== Node.ELEMENT_NODE) {
    if (to.nodeValue !== from.nodeValue) to.nodeValue = from.nodeValue
    return
  }
  for (const a of [...to.attributes]) if (!from.hasAttribute(a.name)) to.removeAttribute(a.name)
  for (const a of [...from.attributes]) if (to.getAttribute(a.name) !== a.value) to.setAttribute(a.name, a.value)
  if (to.nodeName === 'PROGRESS') to.value = from.value
  const before = [...to.childNodes]
  const after = [...from.childNodes]
  after.forEach((c, i) => { if (i < before.length) morph(before[i], c); else to.append(c) })
  for (const c of before.slice(after.length)) c.remove()
}

/** Replaces `parent`'s children with `children`, morphing in place. */
function renderInto (parent, ...children) {
  morph(parent, h(parent.nodeName.toLowerCase(), Object.fromEntries([...parent.attributes].map((a) => [a.name, a.value])), ...children))
}

const fmt = {
  rate: (t) => t === null || t === undefined ? '–' : `${t.perSecond.toLocaleString('en')}/s`,
  p99: (t) => t === null || t === undefined || t.p99Ms === null ? '' : ` · p99 ${t.p99Ms} ms`,
  eta: (s) => s === null || s === undefined ? '–' : s < 60 ? `${s}s` : `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`,
  time: (iso) => iso === null ? '' : new Date(iso).toLocaleTimeString('en-GB'),
  num: (n) => n === null || n === undefined ? '–' : Number(n).toLocaleString('en')
}

function colorOf (id) {
  if (!state.colors.has(id)) state.colors.set(id, PALETTE[state.colors.size % PALETTE.length])
  return state.colors.get(id)
}

function notice (text, kind = 'info') {
  const n = $('notice')
  n.hidden = false
  n.dataset.kind = kind
  n.textContent = text
}

// --- the stream ---------------------------------------------------------------------

function token () {
  return sessionStorage.getItem(TOKEN_KEY)
}

function authHeaders () {
  const t = token()
  return t === null ? {} : { authorization: `Bearer ${t}` }
}

function setConnection (s, text) {
  const c = $('connection')
  c.dataset.state = s
  c.textContent = text
}

function showAuth (message) {
  $('auth').hidden = false
  $('auth-message').textContent = message
}

/** Reads Server-Sent Events from a fetch body; resolves 'bye' when the server says so, 'ended' otherwise. */
async function readEvents (body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader()
  let buffer = ''
  for (;;) {
    const { value, done } = await reader.read()
    if (done) return 'ended'
    buffer += value
    for (let i = buffer.indexOf('\n\n'); i >= 0; i = buffer.indexOf('\n\n')) {
      const frame = buffer.slice(0, i)
      buffer = buffer.slice(i + 2)
      let event = 'message'
      const data = []
      for (const line of frame.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim()
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
      }
      if (onEvent(event, data.join('\n')) === 'bye') {
        await reader.cancel().catch(() => {})
        return 'bye'
      }
    }
  }
}

function onEvent (event, data) {
  if (event === 'hello') {
    state.viewer = JSON.parse(data)
    renderViewer()
  } else if (event === 'snapshot') {
    state.snapshot = JSON.parse(data)
    render()
  } else if (event === 'bye') {
    return 'bye'
  }
  return undefined
}

/** One stream: 'bye' (open the next at once), 'locked' (wait for a token), or 'failed'. */
async function session (controller) {
  setConnection('connecting', 'connecting…')
  const res = await fetch(EVENTS, { headers: authHeaders(), signal: controller.signal, cache: 'no-store' })
  if (res.status === 401 || res.status === 403) {
    const body = await res.json().catch(() => ({}))
    setConnection('locked', res.status === 401 ? 'token needed' : 'not allowed')
    showAuth(res.status === 403 ? `This token may not read the cluster: ${body.message ?? ''}` : token() === null ? 'This cluster needs a token with the read role.' : 'The router refused this token.')
    return 'locked'
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}))
    setConnection('error', `stream refused (${res.status}): ${body.message ?? ''}`)
    return 'failed'
  }
  $('auth').hidden = true
  setConnection('live', 'live')
  return await readEvents(res.body, onEvent)
}

/** Keeps one stream open; a newer call (a new token) stops this one. */
async function run () {
  const generation = ++state.generation
  state.controller?.abort()
  let backoff = 1000
  while (generation === state.generation) {
    const controller = new AbortController()
    state.controller = controller
    let outcome
    try {
      outcome = await session(controller)
    } catch {
      outcome = 'failed'
    }
    controller.abort()
    if (outcome === 'locked' || generation !== state.generation) return
    if (outcome === 'bye') {
      backoff = 1000
      continue
    }
    setConnection('error', 'disconnected; reconnecting…')
    await sleep(backoff)
    backoff = Math.min(backoff * 2, 10_000)
  }
}

// --- admin actions ------------------------------------------------------------------

async function adminCall (method, path, body) {
  const headers = { ...authHeaders(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) }
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const answer = await res.json().catch(() => ({}))
  if (!res.ok) throw new Error(answer.message ?? `HTTP ${res.status}`)
  return answer
}

const groupPath = (id) => `/admin/groups/${encodeURIComponent(id)}`

const ACTIONS = {
  async switchover ({ group, primary }) {
    if (!window.confirm(`Switch over ${group}?\n\nIts primary ${primary} is fenced and hands its role to an in-sync replica; writes to ${group} pause briefly.`)) return
    notice(`Switching over ${group}…`)
    const r = await adminCall('POST', `${groupPath(group)}/switchover`, {})
    notice(`${group}: ${r.to} is primary (term ${r.term}), in ${r.tookMs} ms.`, 'ok')
  },
  async addReplica ({ group }) {
    const url = window.prompt(`Add a replica to ${group}: the URL of a running shard node with empty data (npm run add-replica starts one and adds it).`, 'http://127.0.0.1:')
    if (url === null || url.trim() === '') return
    if (!window.confirm(`Add ${url.trim()} to ${group} as a replica? The primary streams it a full copy.`)) return
    const r = await adminCall('POST', `${groupPath(group)}/replicas`, { url: url.trim() })
    notice(`${url.trim()} joined ${group} (epoch ${r.epoch}); it is in sync once caught up.`, 'ok')
  },
  async removeReplica ({ group, url }) {
    if (!window.confirm(`Remove the replica ${url} from ${group}?\n\nThe node keeps running until you stop it.`)) return
    const r = await adminCall('DELETE', `${groupPath(group)}/replicas?url=${encodeURIComponent(url)}`)
    notice(`${url} left ${group} (epoch ${r.epoch}).`, 'ok')
  }
}

document.addEventListener('click', (e) => {
  const button = e.target.closest?.('button[data-action]')
  if (button === null || button === undefined) return
  const action = ACTIONS[button.dataset.action]
  if (action === undefined) return
  action({ ...button.dataset }).catch((err) => notice(`${button.dataset.action} failed: ${err.message}`, 'error'))
})

// --- rendering ----------------------------------------------------------------------

function renderViewer () {
  const v = state.viewer
  const who = v === null ? '' : v.name === null ? 'open cluster (no token needed) · admin' : `${v.name} · ${v.admin ? 'admin' : 'read-only'}`
  renderInto($('viewer'), who, token() === null ? null : h('button', { type: 'button', id: 'forget' }, 'Forget token'))
}

/** An annulus sector from angle a0 to a1 (radians, 0 at the top, clockwise) between radii r0 < r1. */
function sector (a0, a1, r0, r1) {
  const p = (a, r) => `${(r * Math.sin(a)).toFixed(3)} ${(-r * Math.cos(a)).toFixed(3)}`
  const large = a1 - a0 > Math.PI ? 1 : 0
  return `M ${p(a0, r1)} A ${r1} ${r1} 0 ${large} 1 ${p(a1, r1)} L ${p(a1, r0)} A ${r0} ${r0} 0 ${large} 0 ${p(a0, r0)} Z`
}

/** One ring of arcs sized by share; labels outside when `labelAt` is given. */
function ringArcs (parts, r0, r1, labelAt) {
  const total = parts.reduce((s, p) => s + p.share, 0)
  if (total <= 0) return []
  let angle = 0
  return parts.filter((p) => p.share > 0).map((p) => {
    const span = p.share / total * 2 * Math.PI
    const a0 = angle
    angle += span
    // An arc of a whole turn draws nothing: a single group is two halves.
    const shape = span >= 2 * Math.PI - 1e-6
      ? [h('path', { d: sector(0, Math.PI, r0, r1), fill: colorOf(p.id) }), h('path', { d: sector(Math.PI, 2 * Math.PI, r0, r1), fill: colorOf(p.id) })]
      : h('path', { d: sector(a0, a0 + span, r0, r1), fill: colorOf(p.id) })
    const mid = a0 + span / 2
    // Labels beside the ring grow away from it, so that none is cut at the edge.
    const anchor = Math.sin(mid) > 0.35 ? 'start' : Math.sin(mid) < -0.35 ? 'end' : 'middle'
    const label = labelAt === undefined ? null : h('text', { x: (labelAt * Math.sin(mid)).toFixed(1), y: (-labelAt * Math.cos(mid)).toFixed(1), 'text-anchor': anchor, class: 'arc-label' }, `${p.id} ${(p.share / total * 100).toFixed(1)}%`)
    return h('g', { 'data-key': p.id, 'data-group': p.id, class: 'arc' }, h('title', {}, `${p.id}: ${(p.share / total * 100).toFixed(1)}% of the ring`), shape, label)
  })
}

function renderRing (cluster) {
  const current = cluster.groups.map((g) => ({ id: g.id, share: g.points }))
  const previous = cluster.handover?.previous.map((m) => ({ id: m.id, share: m.weight })) ?? []
  renderInto($('ring'),
    h('g', { class: 'current' }, ringArcs(current, 72, 100, 106)),
    previous.length > 0 ? h('g', { class: 'previous' }, ringArcs(previous, 48, 64)) : null,
    h('text', { class: 'center', y: -4 }, `epoch ${cluster.epoch}`),
    h('text', { class: 'center small', y: 14 }, previous.length > 0 ? 'inner: before the handover' : `${cluster.groups.length} groups`))
  renderInto($('legend'), cluster.groups.map((g) => h('li', { 'data-key': g.id },
    h('svg', { width: 12, height: 12, viewBox: '0 0 12 12' }, h('rect', { width: 12, height: 12, rx: 2, fill: colorOf(g.id) })),
    ` ${g.id}`, g.state === 'active' ? '' : ` (${g.state})`)))
}

function renderRebalance (r) {
  const box = $('rebalance')
  box.dataset.phase = r === null || r === undefined ? 'none' : r.phase
  if (r === null || r === undefined) return renderInto(box, h('p', { class: 'muted' }, 'No rebalance since the router started.'))
  const running = r.phase !== 'done'
  renderInto(box,
    h('p', {}, h('strong', {}, running ? 'Rebalance running' : 'Last rebalance'), ` · ${r.kind === 'add' ? 'adding' : 'removing'} ${r.group} · phase `, h('span', { class: 'phase' }, r.phase)),
    h('progress', { max: 100, value: r.percent, 'aria-label': 'rebalance progress' }),
    h('p', { class: 'figures' }, `${r.percent}% · ${fmt.num(r.scanned)} of ~${fmt.num(r.estimatedRows)} rows scanned · ${fmt.num(r.copied)} copied · ${fmt.num(r.deleted)} purged · ${fmt.num(r.keysPerSecond)} rows/s${running ? ` · ETA ${fmt.eta(r.etaSeconds)}` : ''}`),
    running ? null : h('p', { class: 'muted' }, `finished ${fmt.time(r.finishedAt ?? null)}`),
    r.lastError === undefined ? null : h('p', { class: 'error' }, `retrying after: ${r.lastError}`))
}

function renderOperations (ops) {
  renderInto($('operations'), ops.map((op) => h('li', { 'data-kind': op.kind, 'data-state': op.state, 'data-group': op.group },
    h('span', { class: `badge ${op.state}` }, op.state), ` ${op.kind} · ${op.group} · `, op.detail,
    h('span', { class: 'muted' }, ` · ${fmt.time(op.finishedAt ?? op.startedAt)}`))))
}

function nodeRow (g, n, admin) {
  const lag = n.role === 'replica' ? fmt.num(n.lag) : ''
  return h('tr', { 'data-key': n.url, 'data-node': n.url, 'data-role': n.role, 'data-health': n.health },
    h('td', { class: 'url' }, n.url), h('td', {}, n.role),
    h('td', {}, h('span', { class: `dot ${n.health}` }), ` ${n.health}`),
    h('td', {}, n.role === 'replica' ? (n.inSync ? 'in sync' : 'catching up') : '—'),
    h('td', { class: 'num' }, lag), h('td', { class: 'num' }, fmt.num(n.position)), h('td', { class: 'num' }, n.pid ?? '–'),
    h('td', {}, admin && n.role === 'replica' ? h('button', { type: 'button', 'data-action': 'removeReplica', 'data-group': g.id, 'data-url': n.url }, 'Remove') : null))
}

function groupCard (g, share, traffic, admin) {
  const primary = g.nodes.find((n) => n.role === 'primary')
  return h('article', { class: 'group', 'data-key': g.id, 'data-group': g.id, 'data-state': g.state },
    h('header', {},
      h('svg', { width: 14, height: 14, viewBox: '0 0 14 14' }, h('rect', { width: 14, height: 14, rx: 3, fill: colorOf(g.id) })),
      h('h3', {}, g.id),
      h('span', { class: `badge ${g.state}` }, g.state),
      h('span', { class: `badge redundancy-${g.redundancy}` }, `redundancy ${g.redundancy}`),
      h('span', { class: 'facts' }, `term ${g.term} · weight ${g.weight} · ${share} of the ring · ${g.inSyncReplicas} in-sync replica${g.inSyncReplicas === 1 ? '' : 's'}`),
      h('span', { class: 'traffic' }, `key ops ${fmt.rate(traffic)}${fmt.p99(traffic)}`)),
    admin
      ? h('div', { class: 'actions' },
        h('button', { type: 'button', 'data-action': 'switchover', 'data-group': g.id, 'data-primary': primary?.url ?? '', disabled: !g.nodes.some((n) => n.role === 'replica' && n.inSync) }, 'Switch over'),
        h('button', { type: 'button', 'data-action': 'addReplica', 'data-group': g.id }, 'Add replica…'))
      : null,
    h('table', {},
      h('thead', {}, h('tr', {}, ['node', 'role', 'health', 'in sync', 'lag', 'position', 'pid', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, g.nodes.map((n) => nodeRow(g, n, admin)))))
}

function render () {
  const s = state.snapshot
  if (s === null) return
  const { cluster, traffic } = s
  $('epoch').textContent = String(cluster.epoch)
  $('group-count').textContent = String(cluster.groups.length)
  $('router-traffic').textContent = `${fmt.rate(traffic.router)} requests${fmt.p99(traffic.router)}`
  renderRing(cluster)
  renderRebalance(cluster.rebalance)
  renderOperations(s.operations)
  const points = cluster.groups.reduce((sum, g) => sum + g.points, 0)
  const admin = state.viewer?.admin === true
  renderInto($('groups'), cluster.groups.map((g) => groupCard(g, points > 0 ? `${(g.points / points * 100).toFixed(1)}%` : '0%', traffic.groups[g.id], admin)))
  document.body.dataset.epoch = String(cluster.epoch)
}

// --- start --------------------------------------------------------------------------

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const value = $('token').value.trim()
  if (value === '') return
  sessionStorage.setItem(TOKEN_KEY, value)
  $('token').value = ''
  void run()
})

$('viewer').addEventListener('click', (e) => {
  if (e.target.id !== 'forget') return
  sessionStorage.removeItem(TOKEN_KEY)
  state.viewer = null
  renderViewer()
  void run()
})

void run()
