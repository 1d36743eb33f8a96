import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020'

/**
 * Checks of the router's OpenAPI description (router/openapi.ts) used by
 * test/integration/openapi.test.ts and test/unit/openapi-*.test.ts: is the document
 * structurally OpenAPI 3, which operation does a request match, and the curl examples of
 * README.md and docs/*.md read as requests (the contract format of the issue 13 plan:
 * fenced sh blocks, one request per curl line, `-X`, `-H 'name: value'`, `-d '<json>'`).
 * ajv is the validator fastify already depends on (2020-12, the dialect of OpenAPI 3.1).
 */

type Obj = Record<string, unknown>
export interface Operation extends Obj {
  parameters?: Array<{ name: string, in: string, required?: boolean, schema?: Obj }>
  requestBody?: { required?: boolean, content: Record<string, { schema?: Obj }> }
  responses: Record<string, { description?: string, content?: Record<string, { schema?: Obj }>, headers?: Obj }>
}
export interface OpenApiDoc extends Obj {
  openapi: string
  info: { title: string, version: string }
  paths: Record<string, Record<string, Operation>>
  components?: { schemas?: Record<string, Obj>, securitySchemes?: Record<string, Obj> }
}

export const HTTP_METHODS = ['get', 'head', 'put', 'post', 'delete', 'patch', 'options', 'trace'] as const

function isObj (v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Resolves a local JSON pointer (`#/components/schemas/X`); undefined when it leads nowhere. */
export function resolvePointer (doc: unknown, ref: string): unknown {
  if (!ref.startsWith('#')) return undefined
  let node: unknown = doc
  for (const raw of ref.slice(1).split('/').slice(1)) {
    const part = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~')
    if (!isObj(node) && !Array.isArray(node)) return undefined
    node = (node as Obj)[part]
    if (node === undefined) return undefined
  }
  return node
}

function refsIn (node: unknown, at: string, out: Array<{ at: string, ref: string }>): void {
  if (Array.isArray(node)) node.forEach((v, i) => refsIn(v, `${at}/${i}`, out))
  else if (isObj(node)) {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push({ at, ref: v })
      else refsIn(v, `${at}/${k}`, out)
    }
  }
}

/** Everything that makes the document not a usable OpenAPI 3 description; empty when it is one. */
export function structuralProblems (doc: OpenApiDoc): string[] {
  const problems: string[] = []
  if (typeof doc.openapi !== 'string' || !/^3\.\d+\.\d+$/.test(doc.openapi)) problems.push(`openapi must be a 3.x.y version, is ${String(doc.openapi)}`)
  if (!isObj(doc.info) || typeof doc.info.title !== 'string' || typeof doc.info.version !== 'string') problems.push('info.title and info.version are required')
  if (!isObj(doc.paths)) return [...problems, 'paths must be an object']
  const schemes = Object.keys(doc.components?.securitySchemes ?? {})
  const tags = new Set((Array.isArray(doc.tags) ? doc.tags : []).map((t) => (t as Obj).name))
  const operationIds = new Map<string, string>()
  for (const [path, item] of Object.entries(doc.paths)) {
    if (!path.startsWith('/')) problems.push(`path ${path} must start with /`)
    const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1])
    for (const [method, op] of Object.entries(item)) {
      const where = `${method.toUpperCase()} ${path}`
      if (!(HTTP_METHODS as readonly string[]).includes(method)) { problems.push(`${where}: not an HTTP method`); continue }
      if (!isObj(op.responses) || Object.keys(op.responses).length === 0) problems.push(`${where}: no responses`)
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        if (!/^([1-5]\d\d|[1-5]XX|default)$/.test(status)) problems.push(`${where}: response key ${status}`)
        if (typeof r.description !== 'string') problems.push(`${where} ${status}: a response needs a description`)
      }
      const pathParams = (op.parameters ?? []).filter((p) => p.in === 'path')
      for (const name of templated) {
        const p = pathParams.find((x) => x.name === name)
        if (p === undefined || p.required !== true) problems.push(`${where}: path parameter ${String(name)} must be declared and required`)
      }
      for (const p of pathParams) if (!templated.includes(p.name)) problems.push(`${where}: path parameter ${p.name} is not in the path`)
      for (const p of op.parameters ?? []) if (!['path', 'query', 'header', 'cookie'].includes(p.in)) problems.push(`${where}: parameter ${p.name} in ${p.in}`)
      if (typeof op.operationId === 'string') {
        const seen = operationIds.get(op.operationId)
        if (seen !== undefined) problems.push(`${where}: operationId ${op.operationId} is also ${seen}'s`)
        operationIds.set(op.operationId, where)
      }
      for (const req of (Array.isArray(op.security) ? op.security : []) as Obj[]) {
        for (const name of Object.keys(req)) if (!schemes.includes(name)) problems.push(`${where}: security scheme ${name} is not in components.securitySchemes`)
      }
      for (const tag of (Array.isArray(op.tags) ? op.tags : []) as string[]) if (!tags.has(tag)) problems.push(`${where}: tag ${tag} is not declared`)
    }
  }
  const refs: Array<{ at: string, ref: string }> = []
  refsIn(doc, '#', refs)
  for (const { at, ref } of refs) if (resolvePointer(doc, ref) === undefined) problems.push(`${at}: $ref ${ref} does not resolve`)
  return problems
}

/**
 * A validator for schemas of the document: its components.schemas are added as one
 * schema document, and `#/components/schemas/X` references point into it.
 */
export function schemaValidator (doc: OpenApiDoc): (schema: Obj) => ValidateFunction {
  const ajv = new Ajv2020({ strict: false, allErrors: true })
  const rewrite = <T>(s: T): T => JSON.parse(JSON.stringify(s).replace(/"#\/components\/schemas\//g, '"openapi.json#/$defs/')) as T
  ajv.addSchema({ $id: 'openapi.json', $defs: rewrite(doc.components?.schemas ?? {}) })
  return (schema) => ajv.compile(rewrite(schema))
}

/** The operation a method and URL path (`/kv/a%2Fb`, `/admin/groups/g1`) match: exact paths before templates. */
export function matchOperation (doc: OpenApiDoc, method: string, path: string): { path: string, op: Operation | undefined } | undefined {
  const candidates = Object.keys(doc.paths).sort((a, b) => Number(a.includes('{')) - Number(b.includes('{')))
  for (const template of candidates) {
    const re = new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+')}$`)
    if (re.test(path)) return { path: template, op: doc.paths[template]?.[method.toLowerCase()] }
  }
  return undefined
}
