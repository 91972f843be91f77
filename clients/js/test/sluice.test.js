// Integration tests: DeviceClient against a real sluice process (built from
// this repository with `go build`) running a websocket source into a file
// sink, restarted and killed mid-stream.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { mkdtemp, writeFile, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { WebSocket } from 'ws';

import { DeviceClient, NackError } from '../index.js';

const repo = fileURLToPath(new URL('../../..', import.meta.url));
let bin;

before(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-js-'));
  bin = join(dir, 'sluice');
  await promisify(execFile)('go', ['build', '-o', bin, './cmd/sluice'], { cwd: repo, timeout: 300_000 });
});

async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, cond, ms = 30_000) {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * A sluice process with a websocket source and a file sink in a temp dir,
 * that can be stopped with SIGTERM (graceful) or SIGKILL and started again
 * on the same port.
 */
async function sluice(t, { websocket = '', files = {} } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-js-run-'));
  for (const [name, body] of Object.entries(files)) await writeFile(join(dir, name), body);
  const port = await freePort();
  const out = join(dir, 'out.jsonl');
  await writeFile(join(dir, 'pipeline.yaml'), `pipelines:
  ingest:
    source: { websocket: { listen: 127.0.0.1:${port}, path: /ingest${websocket} } }
    sinks: [ { file: { path: out.jsonl } } ]
`);
  const s = {
    url: `ws://127.0.0.1:${port}/ingest`,
    proc: null,
    log: '',
    async start() {
      const proc = spawn(bin, ['run', '-c', join(dir, 'pipeline.yaml')], { stdio: ['ignore', 'ignore', 'pipe'] });
      this.proc = proc;
      proc.exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
      let ready = false;
      proc.stderr.setEncoding('utf8');
      proc.stderr.on('data', (d) => {
        this.log += d;
        if (this.log.includes('sluice running')) ready = true;
      });
      let exited = false;
      proc.exited.then(() => (exited = true));
      await waitFor('sluice to start', () => {
        if (exited) throw new Error(`sluice exited at start:\n${this.log}`);
        return ready;
      });
      this.log = '';
    },
    async stop(signal = 'SIGTERM') {
      if (!this.proc) return;
      const proc = this.proc;
      this.proc = null;
      proc.kill(signal);
      const { code } = await proc.exited;
      if (signal === 'SIGTERM' && code !== 0) throw new Error(`sluice exited with ${code}:\n${this.log}`);
    },
    async records() {
      let text = '';
      try {
        text = await readFile(out, 'utf8');
      } catch {
        return [];
      }
      return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l));
    },
    async count() {
      try {
        const text = await readFile(out, 'utf8');
        return text.split('\n').length - 1;
      } catch {
        return 0;
      }
    },
  };
  await s.start();
  t.after(async () => {
    await s.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  return s;
}

function client(t, url, opts) {
  const c = new DeviceClient(url, { firstSeq: 1, WebSocket, backoff: { initial: 50, max: 500 }, ...opts });
  t.after(() => c.close());
  return c;
}

/**
 * Checks that records hold seqs 1..n of device once each by identity, first
 * seen in order, duplicates equal to the original. Returns the duplicates.
 */
function checkDelivery(records, device, n, { ordered = true } = {}) {
  const seen = new Map();
  let high = 0;
  let dups = 0;
  for (const [i, r] of records.entries()) {
    assert.equal(r.device_id, device, `record ${i}`);
    assert.equal(r.n, r.seq, `record ${i}: seq ${r.seq} carries n ${r.n}`);
    const text = JSON.stringify(r);
    if (seen.has(r.seq)) {
      assert.equal(text, seen.get(r.seq), `seq ${r.seq} delivered twice with different values`);
      dups++;
      continue;
    }
    if (ordered) assert.equal(r.seq, high + 1, `record ${i}: seq ${r.seq} arrived after ${high}`);
    high = Math.max(high, r.seq);
    seen.set(r.seq, text);
  }
  assert.equal(seen.size, n, 'distinct records');
  return dups;
}

test('every record exactly once, in order, across a sluice restart', async (t) => {
  const s = await sluice(t);
  const c = client(t, s.url, { deviceId: 'js-1' });
  const n = 20_000;
  const sends = [];
  for (let i = 1; i <= n; i++) sends.push(c.send({ n: i, pad: 'x'.repeat(100) }));
  await waitFor('records in the file', async () => (await s.count()) >= n / 4);
  await s.stop('SIGTERM'); // graceful: final acks, then 1001 going away
  await s.start();
  const seqs = await Promise.all(sends);
  assert.deepEqual(seqs, Array.from({ length: n }, (_, i) => i + 1));
  const records = await s.records();
  assert.equal(records.length, n, 'records in the file');
  assert.equal(checkDelivery(records, 'js-1', n), 0, 'duplicates');
  assert.ok(c.stats.connects >= 2, `connects ${c.stats.connects}`);
  assert.equal(c.stats.acked, n);
});

test('every record once by identity after sluice is killed mid-stream', async (t) => {
  const s = await sluice(t);
  const c = client(t, s.url, { deviceId: 'js-2' });
  const n = 20_000;
  const sends = [];
  for (let i = 1; i <= n; i++) sends.push(c.send({ n: i, pad: 'x'.repeat(100) }));
  await waitFor('records in the file', async () => (await s.count()) >= n / 4);
  await s.stop('SIGKILL'); // no final acks: what was written but not acked is sent again
  await s.start();
  await Promise.all(sends);
  const dups = checkDelivery(await s.records(), 'js-2', n);
  t.diagnostic(`duplicates dropped by identity: ${dups}; stats ${JSON.stringify(c.stats)}`);
  assert.equal(c.stats.acked, n);
});

test('frames too large for sluice are split; a record too large is nacked', async (t) => {
  const s = await sluice(t, { websocket: ', max_record_bytes: 2048' });
  const nacked = [];
  const c = client(t, s.url, { deviceId: 'js-3', onNack: (err, rec) => nacked.push([err.seq, rec.length]) });
  const n = 2000;
  const sends = [];
  for (let i = 1; i <= n; i++) sends.push(c.send({ n: i }));
  const big = c.send({ n: n + 1, pad: 'y'.repeat(3000) });
  await Promise.all(sends);
  await assert.rejects(big, (err) => {
    assert.ok(err instanceof NackError);
    assert.equal(err.seq, n + 1);
    assert.equal(err.reason, `frame of ${nacked[0][1]} bytes exceeds max_record_bytes (2048)`);
    return true;
  });
  await c.flush();
  // Frames sent after a rejected one may land first: all arrive, order aside.
  checkDelivery(await s.records(), 'js-3', n, { ordered: false });
  assert.equal(c.frameLimit, 2048);
  assert.deepEqual({ acked: c.stats.acked, nacked: c.stats.nacked }, { acked: n, nacked: 1 });
});

test('a source with auth: takes the token as a subprotocol, refuses others, and a device sends only as itself', async (t) => {
  const token = 'js-device-token-0123456789abcdef';
  const s = await sluice(t, {
    websocket: ', auth: { tokens_file: tokens.txt, device_claim: sub }',
    files: { 'tokens.txt': `${token} sub=js-1\n` },
  });
  const nacks = [];
  const c = client(t, s.url, { deviceId: 'js-1', token: () => token, onNack: (err) => nacks.push(err) });
  for (let i = 1; i <= 20; i++) c.send({ n: i });
  await c.flush();
  assert.equal(c.stats.connects, 1);
  checkDelivery(await s.records(), 'js-1', 20);

  // A wrong token never connects; the server logs the refusal, not the token.
  const wrong = client(t, s.url, { deviceId: 'js-1', token: 'wrong-token-0123456789abcdef' });
  wrong.send({ n: 1 });
  await sleep(500);
  assert.equal(wrong.stats.connects, 0);
  await waitFor('the refusal in the log', () => s.log.includes('authentication failed'));
  assert.ok(!s.log.includes('wrong-token'), 'the token is in the log');

  // The same token for another device id is refused before the upgrade.
  const other = client(t, s.url, { deviceId: 'js-2', token });
  other.send({ n: 1 });
  await sleep(300);
  assert.equal(other.stats.connects, 0);
  assert.equal(nacks.length, 0);
});
