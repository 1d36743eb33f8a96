/**
 * GET /docs: the OpenAPI description as one HTML page, rendered on the router from the
 * document itself (router/openapi.ts says why not Swagger UI). Pure: document in, HTML
 * out; every string from the document is escaped, and the page has no script.
 */

type Obj = Record<string, unknown>

const METHOD_ORDER = ['get', 'head', 'put', 'post', 'patch', 'delete']

function esc (text: unknown): string {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** `code` spans of the descriptions (backticks) as <code>; everything else escaped. */
function prose (text: unknown): string {
  return esc(text ?? '').replace(/`([^`]+)`/g, '<code>$1</code>')
}

function obj (value: unknown): Obj {
  return typeof value === 'object' && value !== null ? value as Obj : {}
}

function parametersOf (op: Obj): string {
  const params = Array.isArray(op.parameters) ? op.parameters.map(obj) : []
  if (params.length === 0) return ''
  const rows = params.map((p) => `<tr><td><code>${esc(p.name)}</code></td><td>${esc(p.in)}</td><td>${p.required === true ? 'yes' : ''}</td><td>${prose(p.description ?? obj(p.schema).description ?? '')}</td></tr>`)
  return `<table><tr><th>parameter</th><th>in</th><th>required</th><th></th></tr>${rows.join('')}</table>`
}

function bodyOf (op: Obj): string {
  const body = obj(op.requestBody)
  const content = obj(body.content)
  const types = Object.keys(content)
  if (types.length === 0) return ''
  const schemas = types.map((t) => `<p>body (<code>${esc(t)}</code>${body.required === false ? ', optional' : ''}):</p><pre>${esc(JSON.stringify(obj(content[t]).schema, null, 2))}</pre>`)
  return schemas.join('')
}

function responsesOf (op: Obj): string {
  const rows = Object.entries(obj(op.responses)).map(([status, r]) => {
    const headers = Object.keys(obj(obj(r).headers))
    return `<tr><td>${esc(status)}</td><td>${prose(obj(r).description)}${headers.length > 0 ? ` <small>(headers: ${headers.map((h) => `<code>${esc(h)}</code>`).join(', ')})</small>` : ''}</td></tr>`
  })
  return `<table><tr><th>status</th><th>answer</th></tr>${rows.join('')}</table>`
}

function operation (path: string, method: string, op: Obj): string {
  const auth = op['x-shardkv-auth']
  const who = auth === 'open' ? 'open (no token)' : auth === 'authenticate' ? 'a valid token (keys checked per op)' : `a token with the ${esc(auth)} role`
  return `<section id="${esc(`${method}-${path}`)}"><h3><span class="m">${esc(method.toUpperCase())}</span> <code>${esc(path)}</code></h3>` +
    `<p><b>${prose(op.summary)}</b></p>${op.description !== undefined ? `<p>${prose(op.description)}</p>` : ''}<p>Needs: ${who}.</p>` +
    `${parametersOf(op)}${bodyOf(op)}${responsesOf(op)}</section>`
}

export function renderDocsPage (doc: Obj): string {
  const info = obj(doc.info)
  const paths = obj(doc.paths)
  const tags = Array.isArray(doc.tags) ? doc.tags.map(obj) : []
  const sections = tags.map((tag) => {
    const ops: string[] = []
    for (const [path, item] of Object.entries(paths)) {
      const methods = Object.keys(obj(item)).sort((a, b) => METHOD_ORDER.indexOf(a) - METHOD_ORDER.indexOf(b))
      for (const method of methods) {
        const op = obj(obj(item)[method])
        if (Array.isArray(op.tags) && op.tags.includes(tag.name)) ops.push(operation(path, method, op))
      }
    }
    return `<h2 id="${esc(tag.name)}">${esc(tag.name)}</h2><p>${prose(tag.description)}</p>${ops.join('')}`
  })
  const schemas = Object.entries(obj(obj(doc.components).schemas))
    .map(([name, s]) => `<h3 id="schema-${esc(name)}">${esc(name)}</h3><pre>${esc(JSON.stringify(s, null, 2))}</pre>`)
  return '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">' +
    `<title>${esc(info.title)}</title><style>${STYLE}</style></head><body>` +
    `<h1>${esc(info.title)} <small>${esc(info.version)}</small></h1><p>${prose(info.description)}</p>` +
    '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>' +
    `${sections.join('')}<h2 id="schemas">Schemas</h2>${schemas.join('')}</body></html>\n`
}

const STYLE = 'body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}' +
  'section{border-top:1px solid #ddd;padding:.4rem 0}h3 .m{display:inline-block;min-width:4.5rem;color:#06c}' +
  'table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left;vertical-align:top}' +
  'pre{background:#f6f6f6;padding:.5rem;overflow:auto;font-size:13px}code{background:#f3f3f3;padding:0 .2rem}'
