// Unit tests of subscribe() against a fake subscription endpoint that
// speaks the protocol of docs/subscribe.md: resume from the last position,
// dedupe across the reconnect, refusals and heartbeats.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket, WebSocketServer } from 'ws';

import { subscribe } from '../subscribe.js';

async function waitFor(what, cond, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A fake endpoint; onConnect(ws, query) scripts each connection. */
async function fakeEndpoint(t, onConnect) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => wss.once('listening', r));
  const f = { url: `ws://127.0.0.1:${wss.address().port}/subscribe`, queries: [] };
  wss.on('connection', (ws, req) => {
    const q = new URL(req.url, 'http://x').searchParams;
    f.queries.push(q);
    onConnect(ws, q, f.queries.length);
  });
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    return new Promise((r) => wss.close(r));
  });
  return f;
}

const send = (ws, obj) => ws.send(JSON.stringify(obj));
const record = (dev, seq, off) => ({
  pos: `0:${off + 1}`, partition: 0, offset: off, key: dev, device_id: dev, seq, value: { device_id: dev, seq },
});

test('builds the subscription URL from topic, from and filter', async (t) => {
  const f = await fakeEndpoint(t, (ws) => send(ws, { type: 'subscribed', topic: 'telemetry', pos: '0:0' }));
  const sub = subscribe(f.url, 'telemetry', {
    WebSocket, from: 'earliest', filter: { device_id: ['a', 'b'], key: 'k', where: ['kind=alert', 'site=x'] },
  }, () => {});
  t.after(() => sub.close());
  await waitFor('a connection', () => f.queries.length === 1);
  const q = f.queries[0];
  assert.equal(q.get('topic'), 'telemetry');
  assert.equal(q.get('from'), 'earliest');
  assert.equal(q.get('device_id'), 'a,b');
  assert.equal(q.get('key'), 'k');
  assert.deepEqual(q.getAll('where'), ['kind=alert', 'site=x']);
});

test('resumes from the last position and drops duplicates', async (t) => {
  const f = await fakeEndpoint(t, (ws, q, n) => {
    if (n === 1) {
      send(ws, { type: 'subscribed', topic: 't', pos: '0:0' });
      send(ws, record('a', 1, 0));
      send(ws, record('b', 1, 1));
      send(ws, record('a', 2, 2));
      ws.close(4000, 'too slow');
      return;
    }
    // The second connection must ask for what follows offset 2, and
    // replays a record the client has seen (as a producer retry would).
    send(ws, { type: 'subscribed', topic: 't', pos: q.get('from') });
    send(ws, record('a', 2, 3));
    send(ws, record('b', 2, 4));
    send(ws, { type: 'checkpoint', pos: '0:9' });
  });
  const got = [];
  const statuses = [];
  const sub = subscribe(f.url, 't', { WebSocket, from: 'earliest', minDelay: 10, onStatus: (s) => statuses.push(s) },
    (r) => got.push(`${r.device_id}/${r.seq}`));
  t.after(() => sub.close());
  await waitFor('four records', () => got.length === 4 && sub.position === '0:9');
  assert.deepEqual(got, ['a/1', 'b/1', 'a/2', 'b/2']);
  assert.equal(f.queries.length, 2);
  assert.equal(f.queries[0].get('from'), 'earliest');
  assert.equal(f.queries[1].get('from'), '0:3');
  assert.ok(statuses.includes('reconnecting'), `statuses ${statuses}`);
});

test('backs off with jitter while the endpoint is away', async (t) => {
  const times = [];
  const f = await fakeEndpoint(t, (ws) => {
    times.push(Date.now());
    ws.close(1011, 'unavailable');
  });
  const sub = subscribe(f.url, 't', { WebSocket, minDelay: 20, maxDelay: 200 }, () => {});
  t.after(() => sub.close());
  await waitFor('five attempts', () => f.queries.length >= 5, 8000);
  sub.close();
  const gaps = times.slice(1).map((x, i) => x - times[i]);
  // Delays grow: 20, 40, 80, 160 ms, each ×0.5–1.5.
  assert.ok(gaps[3] > gaps[0], `gaps ${gaps}`);
  assert.ok(gaps.every((g) => g >= 8), `gaps ${gaps}`);
});

test('stops on a refusal and reports it', async (t) => {
  const f = await fakeEndpoint(t, (ws) => ws.close(4404, 'unknown topic "nope"'));
  const errors = [];
  const sub = subscribe(f.url, 'nope', { WebSocket, minDelay: 10, onError: (e) => errors.push(e) }, () => {});
  t.after(() => sub.close());
  await waitFor('the error', () => errors.length === 1);
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(f.queries.length, 1);
  assert.match(errors[0].message, /4404.*unknown topic/);
  assert.equal(sub.closed, true);
});

test('reconnects when heartbeats stop', async (t) => {
  const f = await fakeEndpoint(t, (ws, q, n) => {
    send(ws, { type: 'subscribed', topic: 't', pos: `0:${n}`, heartbeat_ms: 100 });
    // and then silence
  });
  const sub = subscribe(f.url, 't', { WebSocket, minDelay: 10 }, () => {});
  t.after(() => sub.close());
  await waitFor('a second connection', () => f.queries.length >= 2, 5000);
  assert.equal(f.queries[1].get('from'), '0:1');
});

test('close stops reconnecting', async (t) => {
  const f = await fakeEndpoint(t, (ws) => ws.close(1001, 'going away'));
  const sub = subscribe(f.url, 't', { WebSocket, minDelay: 50 }, () => {});
  await waitFor('a connection', () => f.queries.length === 1);
  sub.close();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(f.queries.length, 1);
});
