// Unit tests of DeviceClient against a fake server that speaks the protocol
// and acks only when the test says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';

import { DeviceClient, NackError, OutboxFullError, ClosedError } from '../index.js';

/** Waits until cond() holds, polling. */
async function waitFor(what, cond, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A server that records every record it receives, per connection. */
async function fakeServer(t) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  const f = {
    url: `ws://127.0.0.1:${wss.address().port}/ingest`,
    /** @type {{ws: WebSocket, records: any[], query: string}[]} */
    conns: [],
    get last() {
      return this.conns[this.conns.length - 1];
    },
    get records() {
      return this.conns.flatMap((c) => c.records);
    },
    reply(obj) {
      this.last.ws.send(JSON.stringify(obj));
    },
  };
  wss.on('connection', (ws, req) => {
    const c = { ws, records: [], query: req.url };
    f.conns.push(c);
    ws.on('message', (data) => {
      for (const line of data.toString().split('\n')) c.records.push(JSON.parse(line));
    });
  });
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    return new Promise((r) => wss.close(r));
  });
  return f;
}

function client(t, url, opts) {
  const c = new DeviceClient(url, { deviceId: 'd1', firstSeq: 1, WebSocket, backoff: { initial: 20, max: 100 }, ...opts });
  t.after(() => c.close());
  return c;
}

test('records are stamped with device_id and seq', async (t) => {
  const f = await fakeServer(t);
  const c = client(t, f.url, { firstSeq: 7 });
  c.send({ temp: 21.5 });
  c.send('{"a":\n [1, 2]}');
  c.send({});
  c.send({ device_id: 'd1', x: 'y\nz' });
  await waitFor('4 records', () => f.records.length === 4);
  assert.deepEqual(f.records, [
    { device_id: 'd1', seq: 7, temp: 21.5 },
    { device_id: 'd1', seq: 8, a: [1, 2] },
    { device_id: 'd1', seq: 9 },
    { seq: 10, device_id: 'd1', x: 'y\nz' },
  ]);
  assert.match(f.last.query, /[?&]device_id=d1(&|$)/);
  assert.equal(f.conns.length, 1, 'records sent together share a connection');
});

test('records the client will not take', async (t) => {
  const c = client(t, 'ws://127.0.0.1:1/ingest');
  const cases = [
    { name: 'seq is the client\'s', record: { seq: 3 }, error: TypeError },
    { name: 'other device', record: { device_id: 'd2' }, error: TypeError },
    { name: 'array', record: [1], error: TypeError },
    { name: 'not JSON', record: '{"a":', error: SyntaxError },
    { name: 'too large', record: { pad: 'x'.repeat(2 << 20) }, error: RangeError },
  ];
  for (const tc of cases) {
    await assert.rejects(c.send(tc.record), tc.error, tc.name);
  }
  assert.equal(c.nextSeq, 1, 'a refused record uses no seq');
});

test('the window bounds records in flight; acks are cumulative', async (t) => {
  const f = await fakeServer(t);
  const c = client(t, f.url, { window: 50 });
  const sends = [];
  for (let i = 1; i <= 200; i++) sends.push(c.send({ n: i }));
  const steps = [
    { ack: 0, received: 50 },
    { ack: 20, received: 70 },
    { ack: 70, received: 120 },
    { ack: 120, received: 170 },
    { ack: 170, received: 200 },
  ];
  for (const s of steps) {
    if (s.ack) f.reply({ ack: s.ack });
    await waitFor(`${s.received} records`, () => f.records.length >= s.received);
    await sleep(50);
    assert.equal(f.records.length, s.received, `after ack ${s.ack}`);
    assert.ok(c.stats.inflight <= 50, `inflight ${c.stats.inflight}`);
  }
  assert.ok(f.last.records.length === 200 && f.conns.length === 1);
  f.reply({ ack: 200 });
  assert.deepEqual(await Promise.all(sends), Array.from({ length: 200 }, (_, i) => i + 1));
  assert.deepEqual(f.records.map((r) => r.n), Array.from({ length: 200 }, (_, i) => i + 1));
  await c.flush();
  assert.equal(c.stats.acked, 200);
});

test('a nack rejects its record, which is not resent', async (t) => {
  const f = await fakeServer(t);
  const nacks = [];
  const c = client(t, f.url, { onNack: (err, rec) => nacks.push([err.seq, rec]) });
  const p = [c.send({ n: 1 }), c.send({ n: 2 }), c.send({ n: 3 })];
  await waitFor('3 records', () => f.records.length === 3);
  f.reply({ nack: 2, seq: 2, device_id: 'd1', error: 'sinks[0].kafka: bad value' });
  f.reply({ ack: 3 });
  assert.equal(await p[0], 1);
  await assert.rejects(p[1], (err) => err instanceof NackError && err.seq === 2 && err.reason === 'sinks[0].kafka: bad value');
  assert.equal(await p[2], 3);
  assert.deepEqual(nacks, [[2, '{"device_id":"d1","seq":2,"n":2}']]);
  // After a reconnect nothing is resent.
  f.last.ws.close(1001, 'going away');
  await waitFor('a reconnect', () => f.conns.length === 2 && c.stats.connects === 2);
  c.send({ n: 4 });
  await waitFor('record 4', () => f.last.records.length === 1);
  assert.deepEqual(f.last.records, [{ device_id: 'd1', seq: 4, n: 4 }]);
  assert.deepEqual({ acked: c.stats.acked, nacked: c.stats.nacked, resent: c.stats.resent }, { acked: 2, nacked: 1, resent: 0 });
});

test('after going away, unacked records are resent in order with the same seqs', async (t) => {
  const f = await fakeServer(t);
  const c = client(t, f.url);
  const sends = [];
  for (let i = 1; i <= 10; i++) sends.push(c.send({ n: i }));
  await waitFor('10 records', () => f.records.length === 10);
  f.reply({ ack: 4 });
  await sends[3];
  f.last.ws.close(1001, 'sluice is shutting down');
  await waitFor('the resend', () => f.conns.length === 2 && f.last.records.length === 6);
  assert.deepEqual(f.last.records.map((r) => r.seq), [5, 6, 7, 8, 9, 10]);
  f.reply({ ack: 6 });
  assert.deepEqual(await Promise.all(sends), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.equal(c.stats.resent, 6);
});

test('an ack beyond what was sent drops the connection', async (t) => {
  const f = await fakeServer(t);
  const c = client(t, f.url);
  const p = c.send({ n: 1 });
  await waitFor('the record', () => f.records.length === 1);
  f.reply({ ack: 5 });
  await waitFor('the resend', () => f.conns.length === 2 && f.last.records.length === 1);
  assert.equal(c.stats.acked, 0);
  f.reply({ ack: 1 });
  assert.equal(await p, 1);
});

test('outbox limit and close', async (t) => {
  const c = client(t, 'ws://127.0.0.1:1/ingest', { outboxLimit: 2 });
  const a = c.send({});
  const b = c.send({});
  await assert.rejects(c.send({}), OutboxFullError);
  const f = c.flush();
  await c.close();
  await assert.rejects(a, ClosedError);
  await assert.rejects(b, ClosedError);
  await assert.rejects(f, ClosedError);
  await assert.rejects(c.send({}), ClosedError);
});

test('a stored outbox is resent first by the next client', async (t) => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
  const first = client(t, 'ws://127.0.0.1:1/ingest', { storage });
  for (let i = 1; i <= 5; i++) first.send({ n: i });
  await first.close();

  const f = await fakeServer(t);
  const second = client(t, f.url, { storage, firstSeq: 100 });
  const p = second.send({ n: 6 });
  await waitFor('6 records', () => f.records.length === 6);
  assert.deepEqual(f.records.map((r) => [r.seq, r.n]), [[1, 1], [2, 2], [3, 3], [4, 4], [5, 5], [100, 6]]);
  f.reply({ ack: 6 });
  assert.equal(await p, 100);
  await second.flush();
  await second.close();
  assert.deepEqual(JSON.parse(store.get('sluice-outbox:d1')), { v: 1, next: 101, records: [] });
});
