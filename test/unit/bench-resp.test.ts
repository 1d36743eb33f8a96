import t from 'tap'
import { RespDecoder, RespError, encodeCommand } from '../../bench/resp'

t.test('commands are arrays of bulk strings, binary-safe', async (t) => {
  t.equal(encodeCommand(['GET', 'user1']).toString(), '*2\r\n$3\r\nGET\r\n$5\r\nuser1\r\n')
  const value = Buffer.from([0, 13, 10, 255])
  t.same(encodeCommand(['SET', 'k', value]), Buffer.concat([Buffer.from('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n'), value, Buffer.from('\r\n')]))
  t.equal(encodeCommand(['SET', 'k', '']).toString(), '*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n', 'an empty value')
})

t.test('every reply type decodes', async (t) => {
  const d = new RespDecoder()
  d.push(Buffer.from('+OK\r\n-ERR wrong type\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*-1\r\n$0\r\n\r\n'))
  const [ok, err, n, bulk, nil, nilArray, empty, ...rest] = d.drain()
  t.equal(ok, 'OK')
  t.ok(err instanceof RespError)
  t.equal((err as RespError).message, 'ERR wrong type')
  t.equal(n, 42)
  t.same(bulk, Buffer.from('hello'))
  t.equal(nil, null, 'nil bulk')
  t.equal(nilArray, null, 'nil array (an aborted EXEC)')
  t.same(empty, Buffer.alloc(0))
  t.same(rest, [])
})

t.test('arrays nest, and an EXEC result carries error replies as values', async (t) => {
  const d = new RespDecoder()
  d.push(Buffer.from('*3\r\n+OK\r\n*2\r\n:1\r\n$1\r\nx\r\n-ERR no\r\n'))
  const [arr] = d.drain()
  t.ok(Array.isArray(arr))
  const [a, b, c] = arr as unknown[]
  t.equal(a, 'OK')
  t.same(b, [1, Buffer.from('x')])
  t.ok(c instanceof RespError)
})

t.test('a reply split anywhere waits for its last byte', async (t) => {
  const whole = Buffer.from('$12\r\nhello\r\nworld\r\n*2\r\n$1\r\na\r\n$-1\r\n:7\r\n')
  for (let cut = 1; cut < whole.length; cut++) {
    const d = new RespDecoder()
    d.push(whole.subarray(0, cut))
    const first = d.drain()
    d.push(whole.subarray(cut))
    const all = [...first, ...d.drain()]
    t.same(all, [Buffer.from('hello\r\nworld'), [Buffer.from('a'), null], 7], `cut at ${cut}`)
  }
  const d = new RespDecoder()
  for (const byte of whole) {
    d.push(Buffer.from([byte]))
  }
  t.same(d.drain(), [Buffer.from('hello\r\nworld'), [Buffer.from('a'), null], 7], 'one byte at a time')
})

t.test('bytes that are not RESP are refused', async (t) => {
  const d = new RespDecoder()
  d.push(Buffer.from('HTTP/1.1 400 Bad Request\r\n'))
  t.throws(() => d.drain(), { code: 'ERR_BENCH_RESP_PROTOCOL' })
  const e = new RespDecoder()
  e.push(Buffer.from(':12a\r\n'))
  t.throws(() => e.drain(), /not a RESP integer/)
})
