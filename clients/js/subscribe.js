// Subscriber client for Sluice: receive a Kafka topic's records over
// WebSocket in real time, resuming from the last position after any
// disconnect. Protocol: docs/subscribe.md.
//
//   import { subscribe } from '@sluicehq/device';
//   const sub = subscribe('ws://127.0.0.1:8080/subscribe', 'telemetry',
//     { from: 'latest', filter: { device_id: ['a', 'b'], where: 'kind=alert' } },
//     (rec) => console.log(rec.device_id, rec.seq, rec.value));
//   …
//   sub.close();

import { protocolsFor } from './auth.js';

/** Close codes after which reconnecting cannot help: a bad request, an
 * unknown topic, a topic or device the token does not grant. */
const FATAL = new Set([4400, 4403, 4404]);
/** The server's close code for a subscriber that fell behind. */
const LAGGING = 4000;

/**
 * Subscribe to topic at url (ws://host/subscribe).
 *
 * Every record is passed to onRecord(record) once, in order per device:
 * record is { pos, partition, offset, ts, key, device_id, seq, part, value }.
 * After a disconnect the client reconnects with jittered exponential
 * backoff and resumes from the position of the last message it received,
 * so nothing is missed (within Kafka's retention); a record seen again
 * (same device_id, seq and part) is dropped.
 *
 * @param {string} url  the subscription endpoint, e.g. ws://127.0.0.1:8080/subscribe
 * @param {string} topic
 * @param {object} [options]
 * @param {string} [options.from='latest']  latest, earliest, time:<RFC3339> or a position
 * @param {object} [options.filter]  { device_id: string|string[], key: string|string[], where: string|string[] } (where: "field=value")
 * @param {string | (() => string)} [options.token]  bearer token for an endpoint with auth:, or a function returning it (called at every connect); sent as the sluice.bearer.<base64url> subprotocol (docs/security.md)
 * @param {Function} [options.WebSocket=globalThis.WebSocket]  a WebSocket class (browsers, Node ≥ 22, or the ws package)
 * @param {number} [options.minDelay=250]  first reconnect delay, ms
 * @param {number} [options.maxDelay=10000]  largest reconnect delay, ms
 * @param {number} [options.dedupe=10000]  how many record ids to remember
 * @param {(status: string, detail?: object) => void} [options.onStatus]  connecting, live, lagging, reconnecting, closed
 * @param {(err: Error) => void} [options.onError]  a refused subscription (after which it stops) or a throwing onRecord
 * @param {(record: object) => void} onRecord
 * @returns {{ close(): void, readonly position: string|null, readonly closed: boolean }}
 */
export function subscribe(url, topic, options, onRecord) {
  if (typeof options === 'function') {
    onRecord = options;
    options = {};
  }
  const opts = { from: 'latest', minDelay: 250, maxDelay: 10000, dedupe: 10000, ...options };
  const WS = opts.WebSocket ?? globalThis.WebSocket;
  if (typeof WS !== 'function') {
    throw new TypeError('subscribe: no WebSocket class: pass options.WebSocket (e.g. the ws package on Node < 22)');
  }
  if (typeof onRecord !== 'function') throw new TypeError('subscribe: onRecord must be a function');
  const status = opts.onStatus ?? (() => {});
  const fail = opts.onError ?? ((err) => console.error('sluice subscribe:', err));

  let position = null; // pos of the last message: where to resume
  let sock = null;
  let stopped = false;
  let attempt = 0;
  let timer = null;
  let watchdog = null;
  let heartbeat = 5000;
  let lastMessage = 0;
  const seen = new Map();

  function target() {
    const u = new URL(url);
    u.searchParams.set('topic', topic);
    u.searchParams.set('from', position ?? opts.from);
    const f = opts.filter ?? {};
    for (const name of ['device_id', 'key', 'where']) {
      const v = f[name];
      if (v === undefined || v === null) continue;
      const list = Array.isArray(v) ? v : [v];
      if (name === 'device_id') {
        if (list.length) u.searchParams.set(name, list.join(','));
      } else {
        for (const x of list) u.searchParams.append(name, x);
      }
    }
    return u.toString();
  }

  function connect() {
    timer = null;
    if (stopped) return;
    status(attempt ? 'reconnecting' : 'connecting', { position });
    let s;
    try {
      const protocols = protocolsFor(opts.token);
      s = protocols ? new WS(target(), protocols) : new WS(target());
    } catch (err) {
      fail(err);
      retry(0);
      return;
    }
    sock = s;
    lastMessage = Date.now();
    s.onmessage = (ev) => {
      if (s !== sock) return;
      lastMessage = Date.now();
      let msg;
      try {
        msg = JSON.parse(typeof ev.data === 'string' ? ev.data : String(ev.data));
      } catch {
        return;
      }
      if (typeof msg.pos === 'string') position = msg.pos;
      switch (msg.type) {
        case undefined:
          deliver(msg);
          return;
        case 'subscribed':
          attempt = 0;
          if (msg.heartbeat_ms > 0) heartbeat = msg.heartbeat_ms;
          status('live', { position, expired: msg.expired });
          return;
        case 'lagging':
          status('lagging', { position });
          return;
        default: // checkpoint, and kinds added later
      }
    };
    s.onclose = (ev) => {
      if (s !== sock) return;
      sock = null;
      if (stopped) return;
      if (FATAL.has(ev.code)) {
        stopped = true;
        clearInterval(watchdog);
        status('closed', { code: ev.code, reason: ev.reason });
        fail(new Error(`subscription refused (${ev.code}): ${ev.reason}`));
        return;
      }
      retry(ev.code);
    };
    s.onerror = () => {}; // a close event follows
  }

  function deliver(msg) {
    if (msg.device_id !== undefined && msg.seq !== undefined) {
      const id = `${msg.device_id}/${msg.seq}/${msg.part ?? 0}`;
      if (seen.has(id)) return;
      seen.set(id, true);
      if (seen.size > opts.dedupe) seen.delete(seen.keys().next().value);
    }
    try {
      onRecord(msg);
    } catch (err) {
      fail(err);
    }
  }

  function retry(code) {
    if (stopped || timer) return;
    const base = code === LAGGING ? opts.minDelay : Math.min(opts.maxDelay, opts.minDelay * 2 ** attempt);
    attempt++;
    status('reconnecting', { position, code });
    timer = setTimeout(connect, base * (0.5 + Math.random()));
  }

  // A connection silent for three heartbeats is dead: drop it and resume.
  watchdog = setInterval(() => {
    if (sock && Date.now() - lastMessage > 3 * heartbeat) {
      const s = sock;
      sock = null;
      try { s.close(4001, 'heartbeat missed'); } catch { /* already closing */ }
      retry(0);
    }
  }, 1000);
  if (typeof watchdog === 'object' && typeof watchdog.unref === 'function') watchdog.unref();

  connect();

  return {
    close() {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      clearInterval(watchdog);
      const s = sock;
      sock = null;
      if (s) {
        try { s.close(1000, 'bye'); } catch { /* already closing */ }
      }
      status('closed', { position });
    },
    get position() { return position; },
    get closed() { return stopped; },
  };
}
