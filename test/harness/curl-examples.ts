/**
 * The curl examples of the docs, read as requests. The contract (issue 13 plan): fenced
 * ```sh blocks, one request per `curl` line, URL `http://127.0.0.1:8080/...`, method via
 * `-X` (default GET), headers via `-H 'name: value'`, bodies via `-d '<json>'` or
 * `--data-binary '...'`. Read with a small shell tokenizer (quotes, comments, `$(...)`
 * left unexpanded), so a quoted argument that spans lines still counts as one request.
 */

export interface CurlExample {
  file: string
  /** 1-based line of the `curl` word. */
  line: number
  method: string
  url: string
  headers: Array<[string, string]>
  /** Literal body text; undefined when none or when it comes from a file (`@path`). */
  body: string | undefined
  bodyFromFile: boolean
  /** Arguments the reader does not know (an option it cannot tell takes a value or not). */
  unknown: string[]
}

const WITH_VALUE = new Set(['-X', '--request', '-H', '--header', '-d', '--data', '--data-raw', '--data-binary', '--data-ascii',
  '--data-urlencode', '--json', '--cacert', '--cert', '--key', '-o', '--output', '-w', '--write-out', '-u', '--user', '-T',
  '--upload-file', '-m', '--max-time', '--connect-timeout', '-A', '--user-agent', '-e', '--referer', '--oauth2-bearer', '--retry'])
const FLAGS = /^(-[isSfvkLNgI]+|--(include|silent|show-error|fail|fail-with-body|verbose|insecure|location|no-buffer|globoff|http1\.1|head|compressed))$/
const DATA = new Set(['-d', '--data', '--data-raw', '--data-binary', '--data-ascii', '--json'])

interface Token { text: string, line: number, end: boolean }

/** Shell words of a block; `end` marks where one command stops (a newline, `|`, `;`, `&&` outside quotes). */
function tokenize (block: string, firstLine: number): Token[] {
  const out: Token[] = []
  let word: string | undefined
  let wordLine = firstLine
  let line = firstLine
  const flush = (end = false): void => {
    if (word !== undefined) out.push({ text: word, line: wordLine, end: false })
    word = undefined
    if (end && out.length > 0) (out[out.length - 1] as Token).end = true
  }
  for (let i = 0; i < block.length; i++) {
    const c = block[i] as string
    const start = (): void => { if (word === undefined) { word = ''; wordLine = line } }
    if (c === '\\' && block[i + 1] === '\n') { i++; line++; continue }
    if (c === '\n') { flush(true); line++; continue }
    if (c === ' ' || c === '\t') { flush(); continue }
    if (c === '#' && word === undefined) { while (i + 1 < block.length && block[i + 1] !== '\n') i++; continue }
    if ((c === '|' || c === ';' || c === '&') && word === undefined) { flush(true); continue }
    start()
    if (c === "'") {
      const close = block.indexOf("'", i + 1)
      const end = close === -1 ? block.length : close
      const text = block.slice(i + 1, end)
      line += text.split('\n').length - 1
      word += text
      i = end
    } else if (c === '"') {
      let j = i + 1
      for (; j < block.length && block[j] !== '"'; j++) {
        if (block[j] === '\\' && j + 1 < block.length && '"\\$`'.includes(block[j + 1] as string)) { j++; word += block[j] as string; continue }
        if (block[j] === '\n') line++
        word += block[j] as string
      }
      i = j
    } else if (c === '\\' && i + 1 < block.length) {
      word += block[++i] as string
    } else {
      word += c
    }
  }
  flush(true)
  return out
}

function request (words: Token[], file: string): CurlExample {
  const ex: CurlExample = { file, line: (words[0] as Token).line, method: '', url: '', headers: [], body: undefined, bodyFromFile: false, unknown: [] }
  let method: string | undefined
  let upload = false
  let head = false
  for (let i = 1; i < words.length; i++) {
    const w = (words[i] as Token).text
    if (WITH_VALUE.has(w)) {
      const v = words[++i]?.text ?? ''
      if (w === '-X' || w === '--request') method = v.toUpperCase()
      else if (w === '-H' || w === '--header') {
        const colon = v.indexOf(':')
        ex.headers.push([v.slice(0, colon === -1 ? v.length : colon).trim().toLowerCase(), colon === -1 ? '' : v.slice(colon + 1).trim()])
      } else if (DATA.has(w)) {
        if (v.startsWith('@')) ex.bodyFromFile = true
        else ex.body = v
        if (w === '--json') ex.headers.push(['content-type', 'application/json'])
      } else if (w === '-T' || w === '--upload-file') upload = true
    } else if (FLAGS.test(w)) {
      if (w === '--head' || (/^-[a-zA-Z]+$/.test(w) && w.includes('I'))) head = true
    } else if (w.startsWith('-')) {
      ex.unknown.push(w)
    } else if (ex.url === '') {
      ex.url = w
    } else {
      ex.unknown.push(w)
    }
  }
  ex.method = method ?? (head ? 'HEAD' : upload ? 'PUT' : ex.body !== undefined || ex.bodyFromFile ? 'POST' : 'GET')
  return ex
}

/** Every curl request in the fenced sh/bash/shell blocks of a markdown text. */
export function curlExamples (markdown: string, file: string): CurlExample[] {
  const out: CurlExample[] = []
  const lines = markdown.split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (!/^\s*```(sh|bash|shell|console)\s*$/.test(lines[i] as string)) continue
    const start = i + 1
    let end = start
    while (end < lines.length && !/^\s*```\s*$/.test(lines[end] as string)) end++
    const tokens = tokenize(lines.slice(start, end).join('\n'), start + 1)
    let command: Token[] = []
    for (const t of tokens) {
      command.push(t)
      if (t.end) {
        const first = command[0]?.text === '$' ? command.slice(1) : command
        if (first[0]?.text === 'curl') out.push(request(first, file))
        command = []
      }
    }
    i = end
  }
  return out
}

/** The router address of the contract; examples elsewhere (a shard node's port, https with a CA) are not the router's API. */
export const ROUTER_EXAMPLE_URL = /^https?:\/\/127\.0\.0\.1:8080(\/[^\s]*)$/
