import t from 'tap'
import { readdirSync, readFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { parseAllDocuments, parse } from 'yaml'
import { Namespace, Service } from 'kubernetes-models/v1'
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1'
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1'
import * as options from '../../src/config/options'

/**
 * deploy/kubernetes/, checked offline: every object validates against the Kubernetes API
 * schemas (kubernetes-models: classes generated from the Kubernetes OpenAPI specification,
 * each validating with its JSON schema), and the manifests agree with each other and with the
 * code (Services select pods, probes name declared ports, Secrets exist, every flag is a real
 * option, every group has its PodDisruptionBudget and the same shape as g1).
 */

const DIR = resolve(__dirname, '..', '..', 'deploy', 'kubernetes')

// Everything the manifests may contain, by apiVersion/kind: anything else is refused.
const MODELS: Record<string, new (data: any) => { validate: () => void }> = {
  'v1/Namespace': Namespace,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget
}

interface K8sObject { apiVersion: string, kind: string, metadata: { name: string, labels?: Record<string, string> }, spec?: any, file: string }

const kustomization = parse(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'))
const files: string[] = kustomization.resources
const objects: K8sObject[] = files.flatMap((file) => parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((doc) => {
  if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors[0]!.message}`)
  return { ...doc.toJS(), file }
}))
const byKind = (kind: string): K8sObject[] => objects.filter((o) => o.kind === kind)
const workloads = [...byKind('Deployment'), ...byKind('StatefulSet')]
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v)

t.test('kustomization lists every manifest in the folder, and only those', async (t) => {
  const yamls = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort()
  t.same([...files].sort(), yamls)
  t.equal(kustomization.namespace, 'shardkv')
})

t.test('every object validates against the Kubernetes API schema of its kind', async (t) => {
  for (const o of objects) {
    const Model = MODELS[`${o.apiVersion}/${o.kind}`]
    if (Model === undefined) { t.fail(`${o.file}: ${o.apiVersion} ${o.kind} is not a kind this test knows`); continue }
    const { file, ...data } = o
    t.doesNotThrow(() => { new Model(data).validate() }, `${file}: ${o.kind} ${o.metadata.name}`)
  }
})

t.test('the validator refuses what the API server would', async (t) => {
  const bad = { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: { name: 'x' }, spec: { replicas: 'two', selector: {}, template: {} } }
  t.throws(() => { new StatefulSet(bad as any).validate() }, 'replicas must be an integer')
  const noContainers = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' }, spec: { selector: {}, template: { spec: {} } } }
  t.throws(() => { new Deployment(noContainers as any).validate() }, 'a pod spec needs containers')
})

t.test('every Service selects pods of a workload; every StatefulSet has its headless Service', async (t) => {
  for (const svc of byKind('Service')) {
    const target = workloads.find((w) => matches(svc.spec.selector, w.spec.template.metadata.labels))
    t.ok(target, `Service ${svc.metadata.name} selects ${target?.metadata.name ?? 'nothing'}`)
    for (const p of svc.spec.ports) {
      const declared = target?.spec.template.spec.containers.some((c: any) => c.ports?.some((cp: any) => cp.containerPort === p.targetPort))
      t.ok(declared, `Service ${svc.metadata.name} port ${p.name} -> a declared containerPort ${p.targetPort}`)
    }
  }
  for (const sts of byKind('StatefulSet')) {
    const svc = byKind('Service').find((s) => s.metadata.name === sts.spec.serviceName)
    t.equal(svc?.spec.clusterIP, 'None', `StatefulSet ${sts.metadata.name}: headless Service ${sts.spec.serviceName}`)
    t.equal(svc?.spec.publishNotReadyAddresses, true, `${sts.metadata.name}: pods are reachable by name before they are ready`)
    t.ok(sts.spec.volumeClaimTemplates?.length > 0, `StatefulSet ${sts.metadata.name} claims a volume per pod`)
  }
})

t.test('every workload has a PodDisruptionBudget of maxUnavailable 1, resource requests and probes on declared ports', async (t) => {
  for (const w of workloads) {
    const pdb = byKind('PodDisruptionBudget').find((p) => matches(p.spec.selector.matchLabels, w.spec.template.metadata.labels))
    t.equal(pdb?.spec.maxUnavailable, 1, `${w.kind} ${w.metadata.name}: PodDisruptionBudget maxUnavailable 1`)
    for (const c of w.spec.template.spec.containers) {
      t.ok(c.resources?.requests?.cpu !== undefined && c.resources?.requests?.memory !== undefined, `${w.metadata.name}/${c.name}: cpu and memory requests`)
      const ports = new Set(c.ports.map((p: any) => p.containerPort))
      for (const probe of ['readinessProbe', 'livenessProbe']) {
        const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port
        t.ok(ports.has(port), `${w.metadata.name}/${c.name}: ${probe} on a declared port (${String(port)})`)
      }
    }
  }
})

/** The shardkv containers: role (first arg) and flags. */
function shardkvContainers (): Array<{ w: K8sObject, c: any, role: string, flags: Map<string, string[]> }> {
  return workloads.flatMap((w) => w.spec.template.spec.containers.filter((c: any) => c.image === 'shardkv').map((c: any) => {
    const flags = new Map<string, string[]>()
    for (const arg of c.args.slice(1)) {
      const m = /^--([a-z-]+)=(.*)$/.exec(arg)
      if (m === null) throw new Error(`${w.metadata.name}: argument ${arg} is not --flag=value`)
      flags.set(m[1]!, [...(flags.get(m[1]!) ?? []), m[2]!])
    }
    return { w, c, role: c.args[0], flags }
  }))
}

t.test('shardkv containers: a role, known flags, non-root, credentials from the Secrets', async (t) => {
  const secretNames = new Set((kustomization.secretGenerator as any[]).map((s) => s.name))
  const secretKeys = new Map((kustomization.secretGenerator as any[]).map((s) => [s.name, new Set((s.files as string[]).map((f) => basename(f)))]))
  // Options of the parts that exist in this checkout (the coordinator's come with the control-plane split).
  const tables: Record<string, Record<string, { flag: string }> | undefined> = {
    node: options.SHARD_OPTIONS,
    router: 'COORDINATOR_OPTIONS' in options ? options.ROUTER_OPTIONS : undefined,
    coordinator: (options as Record<string, any>).COORDINATOR_OPTIONS
  }
  for (const { w, c, role, flags } of shardkvContainers()) {
    t.ok(['node', 'router', 'coordinator'].includes(role), `${w.metadata.name}: role ${role}`)
    const table = tables[role]
    if (table !== undefined) {
      const known = new Set(Object.values(table).map((o) => o.flag))
      for (const f of flags.keys()) t.ok(known.has(f), `${w.metadata.name}: --${f} is an option of shardkv ${role}`)
    }
    t.equal(w.spec.template.spec.securityContext?.runAsNonRoot, true, `${w.metadata.name}: runs as non-root`)
    t.equal(flags.get('cluster-secret-file')?.[0], '/run/shardkv/cluster-secret', `${w.metadata.name}: the cluster secret`)
    t.equal(flags.get('tokens-file')?.[0], '/run/shardkv/tokens.json', `${w.metadata.name}: the tokens file`)
    for (const v of w.spec.template.spec.volumes.filter((v: any) => v.secret !== undefined)) t.ok(secretNames.has(v.secret.secretName), `${w.metadata.name}: Secret ${v.secret.secretName} is generated`)
    for (const e of c.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef
      if (ref !== undefined) t.ok(secretKeys.get(ref.name)?.has(ref.key), `${w.metadata.name}: env ${e.name} from ${ref.name}/${ref.key}`)
    }
  }
})

t.test('shard groups: readiness /readyz, liveness /healthz, a preStop switchover, and the shape of g1', async (t) => {
  const groups = byKind('StatefulSet').filter((s) => s.spec.template.metadata.labels['shardkv.io/group'] !== undefined)
  t.same(groups.map((g) => g.metadata.name), ['g1', 'g2', 'g3'])
  const coordinator = shardkvContainers().find((x) => x.role === 'coordinator')
  for (const g of groups) {
    const c = g.spec.template.spec.containers[0]
    t.equal(c.readinessProbe.httpGet.path, '/readyz', `${g.metadata.name}: ready = primary or in-sync replica`)
    t.equal(c.livenessProbe.httpGet.path, '/healthz', `${g.metadata.name}: alive = the process answers`)
    t.same(c.lifecycle.preStop.exec.command, ['shardkv', 'prestop'], `${g.metadata.name}: preStop hands the primary role off`)
    t.ok(g.spec.template.spec.terminationGracePeriodSeconds >= 30, `${g.metadata.name}: time for the switchover`)
    t.ok(c.args.includes(`--group=${g.metadata.name}`), `${g.metadata.name}: its nodes say their group`)
    const seed = `${g.metadata.name}=http://${g.metadata.name}-0.${g.metadata.name}:7001+http://${g.metadata.name}-1.${g.metadata.name}:7001`
    t.ok(coordinator?.flags.get('group')?.includes(seed), `the coordinator seeds ${seed}`)
  }
  // add-shard in docs/deployment.md copies group-g1.yaml with the id replaced: the others are exactly that.
  const g1 = readFileSync(join(DIR, 'group-g1.yaml'), 'utf8')
  for (const id of ['g2', 'g3']) {
    const text = readFileSync(join(DIR, `group-${id}.yaml`), 'utf8')
    const body = (s: string): string => s.split('\n').filter((l) => !l.startsWith('#')).join('\n')
    t.equal(body(text), body(g1.replaceAll('g1', id)), `group-${id}.yaml is group-g1.yaml with g1 -> ${id}`)
  }
})

t.test('coordinators and routers: on etcd, probes of the process (a standby coordinator is ready), restarted when deposed', async (t) => {
  const containers = shardkvContainers()
  const coordinators = containers.filter((x) => x.role === 'coordinator')
  const routers = containers.filter((x) => x.role === 'router')
  t.equal(coordinators.length, 1, 'one coordinator Deployment')
  t.equal(routers.length, 1, 'one router Deployment')
  const registry = coordinators[0]!.flags.get('registry')?.[0]
  const cluster = coordinators[0]!.flags.get('registry-cluster')?.[0]
  t.match(registry, /^etcd:\/\//, 'the coordinators keep the map and the leader key in etcd')
  for (const { w, c, role, flags } of [...coordinators, ...routers]) {
    t.equal(w.kind, 'Deployment', `${w.metadata.name}: a Deployment (no state of its own)`)
    t.ok(w.spec.replicas >= 2, `${w.metadata.name}: at least 2 replicas`)
    t.equal(flags.get('registry')?.[0], registry, `${w.metadata.name}: the same etcd`)
    t.equal(flags.get('registry-cluster')?.[0], cluster, `${w.metadata.name}: the same cluster name`)
    t.notOk(flags.has('coordinator'), `${w.metadata.name}: finds the leader in etcd, not at a fixed URL`)
    // /healthz answers 200 for a standby coordinator ("leader": false): ready and alive as a process.
    // A probe that required leading would keep one pod unready for ever and stall rollouts and drains.
    // A router is ready once it holds a map to route by (/readyz), not merely once it answers.
    const ready = role === 'router' ? '/readyz' : '/healthz'
    t.equal(c.readinessProbe?.httpGet?.path, ready, `${w.metadata.name}: ready = ${role === 'router' ? 'it holds a map' : 'the process answers'} (${role})`)
    t.equal(c.livenessProbe?.httpGet?.path, '/healthz', `${w.metadata.name}: alive = the process answers`)
    // A deposed leader whose term cannot stop exits (code 3) and must be started again: a Deployment's pods restart always.
    t.ok([undefined, 'Always'].includes(w.spec.template.spec.restartPolicy), `${w.metadata.name}: restartPolicy Always`)
  }
  t.ok(coordinators[0]!.flags.get('advertise-url')?.[0]?.includes('$(POD_IP)'), 'the leader advertises its pod, not the Service (which also reaches the standby)')
})
