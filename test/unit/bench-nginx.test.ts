import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { nginxConfig, type NginxConfigOptions } from '../../bench/nginx-config'
import { findNginx } from '../../bench/nginx'

const base: NginxConfigOptions = { prefix: '/tmp/bench-x/nginx', host: '127.0.0.1', listenPort: 18080, upstreams: ['127.0.0.1:7001'] }

t.test('the peer configuration the issue asks for', async (t) => {
  const conf = nginxConfig(base)
  t.match(conf, /^daemon off;$/m, 'runs as our child, not a daemon')
  t.match(conf, /^pid \/tmp\/bench-x\/nginx\/nginx\.pid;$/m, 'pid file in the temp dir')
  t.match(conf, /^error_log \/tmp\/bench-x\/nginx\/error\.log warn;$/m, 'log in the temp dir')
  t.match(conf, /upstream shardkv \{\s+hash \$request_uri consistent;\s+server 127\.0\.0\.1:7001;\s+keepalive 64;/, 'consistent hash upstream with keepalive')
  t.match(conf, /listen 127\.0\.0\.1:18080;/)
  t.match(conf, /proxy_pass http:\/\/shardkv;/)
  t.match(conf, /proxy_http_version 1\.1;/, 'HTTP/1.1 upstream: needed for keepalive')
  t.match(conf, /proxy_set_header Connection "";/, 'no "Connection: close" upstream')
  t.match(conf, /^worker_processes 1;$/m)
  t.match(conf, /access_log off;/)
  for (const p of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) t.match(conf, new RegExp(`${p}_temp_path /tmp/bench-x/nginx/${p};`), `${p} temp path in the prefix`)
  t.match(conf, /client_max_body_size 2097152;/, 'values up to the 1 MiB limit get through')
  t.equal((conf.match(/{/g) ?? []).length, (conf.match(/}/g) ?? []).length, 'balanced braces')
})

t.test('options', async (t) => {
  const conf = nginxConfig({ ...base, prefix: '/p/', upstreams: ['127.0.0.1:7001', 'localhost:7002'], keepalive: 8, workerProcesses: 2, maxBodyBytes: 4096 })
  t.match(conf, /server 127\.0\.0\.1:7001;\s+server localhost:7002;/)
  t.match(conf, /keepalive 8;/)
  t.match(conf, /worker_processes 2;/)
  t.match(conf, /client_max_body_size 4096;/)
  t.match(conf, /^pid \/p\/nginx\.pid;$/m, 'trailing slash of the prefix dropped')
  t.match(nginxConfig({ ...base, host: '::1' }), /listen \[::1\]:18080;/, 'IPv6 listen address bracketed')
})

t.test('refuses what would make a broken or injected config', async (t) => {
  t.throws(() => nginxConfig({ ...base, upstreams: [] }), /at least one upstream/)
  t.throws(() => nginxConfig({ ...base, upstreams: ['127.0.0.1'] }), /not host:port/)
  t.throws(() => nginxConfig({ ...base, upstreams: ['127.0.0.1:70000'] }), /port from 1 to 65535/)
  t.throws(() => nginxConfig({ ...base, upstreams: ['a:1; include /etc/passwd'] }), /not host:port/)
  t.throws(() => nginxConfig({ ...base, listenPort: 0 }), /listenPort/)
  t.throws(() => nginxConfig({ ...base, prefix: '/tmp/a b' }), /prefix/)
  t.throws(() => nginxConfig({ ...base, prefix: '/tmp/x;y' }), /prefix/)
  t.throws(() => nginxConfig({ ...base, host: '127.0.0.1;' }), /listen host/)
  t.throws(() => nginxConfig({ ...base, keepalive: 0 }), /keepalive/)
  t.throws(() => nginxConfig({ ...base, workerProcesses: 1.5 }), /workerProcesses/)
})

// The real parser is the only judge of syntax; skipped where nginx is not installed.
const nginx = findNginx()
t.test('nginx -t accepts the generated config', { skip: nginx === undefined ? 'nginx not installed' : false }, async (t) => {
  const prefix = mkdtempSync(join(tmpdir(), 'bench-nginx-test-'))
  t.teardown(() => rmSync(prefix, { recursive: true, force: true }))
  const conf = join(prefix, 'nginx.conf')
  writeFileSync(conf, nginxConfig({ ...base, prefix, upstreams: ['127.0.0.1:7001', '127.0.0.1:7002'] }))
  const r = spawnSync(nginx as string, ['-t', '-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')], { encoding: 'utf8' })
  t.equal(r.status, 0, `nginx -t: ${r.stderr}`)
  t.match(r.stderr, /syntax is ok/)
})
