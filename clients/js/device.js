// Device client for Sluice's WebSocket source. The protocol is described in
// docs/protocol.md; this file implements it for browsers and Node >= 20.

import { protocolsFor } from './auth.js';

/**
 * A WebSocket constructor: the browser's (and Node 22's) global WebSocket,
 * or `WebSocket` from the npm `ws` package on Node 20.
 * @typedef {new (url: string, protocols?: string[]) => WebSocketLike} WebSocketConstructor
 */

/**
 * The part of the WebSocket API the client uses.
 * @typedef {Object} WebSocketLike
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: {data: any}) => void) | null} onmessage
 * @property {((ev: {code: number, reason: string}) => void) | null} onclose
 * @property {((ev: any) => void) | null} onerror
 */

/**
 * Storage for the outbox, e.g. `localStorage`.
 * @typedef {Object} StorageLike
 * @property {(key: string) => string | null} getItem
 * @property {(key: string, value: string) => void} setItem
 * @property {(key: string) => void} removeItem
 */

/**
 * @typedef {Object} DeviceClientOptions
 * @property {string} deviceId The device's id (required). Added to every
 *   record as `device_id`; with `seq` it is the record's identity, by which
 *   Sluice drops the duplicates that resending produces.
 * @property {number} [window=1024] Records sent and not yet acknowledged on
 *   a connection. Keep it at or below the server's window (default 4096).
 * @property {number} [outboxLimit=100000] Records queued and not yet
 *   settled; past it `send` rejects with OutboxFullError.
 * @property {number} [maxFrameBytes=65536] Bytes in a frame of several
 *   newline-separated records; must not exceed the server's
 *   max_record_bytes. A larger record is sent alone.
 * @property {number} [maxRecordBytes=1048576] Largest record `send` takes.
 * @property {number} [firstSeq] Seq of the first record when nothing is
 *   stored (default: Date.now() * 1000, so that a restarted device does not
 *   reuse the seqs of its previous run).
 * @property {string | (() => string)} [token] Bearer token for a source
 *   with `auth:` (a static token or a JWT), or a function returning it,
 *   called at every connect so that a renewed token is used. Sent as the
 *   `sluice.bearer.<base64url>` subprotocol, which browsers allow (they
 *   cannot set headers on a WebSocket). See docs/security.md.
 * @property {WebSocketConstructor} [WebSocket] WebSocket implementation
 *   (default: globalThis.WebSocket; pass `WebSocket` from `ws` on Node 20).
 * @property {StorageLike} [storage] Keep the outbox in this storage (e.g.
 *   `localStorage`) so that queued records survive a page reload; best
 *   effort, bounded by the storage quota.
 * @property {string} [storageKey] Key in `storage` (default
 *   `sluice-outbox:<deviceId>`).
 * @property {{initial?: number, max?: number, multiplier?: number, jitter?: number}} [backoff]
 *   Reconnect delays in ms: from `initial` (100) growing by `multiplier` (2)
 *   up to `max` (5000), each randomised by ±`jitter` (0.5).
 * @property {(err: NackError, record: string) => void} [onNack] Called for
 *   each record the server rejected for good (it is not resent).
 * @property {{info?: (msg: string, data?: object) => void, warn?: (msg: string, data?: object) => void}} [logger]
 *   Receives connection events (default: none).
 */

/**
 * @typedef {Object} DeviceStats
 * @property {number} sent Records written to a connection for the first time.
 * @property {number} resent Records written again after a reconnect (or
 *   loaded from storage).
 * @property {number} acked
 * @property {number} nacked
 * @property {number} inflight Sent on this connection, not yet acknowledged.
 * @property {number} queued In the outbox, not yet settled (inflight included).
 * @property {number} connects Connections opened.
 */

/** A record the server rejected for good; it must not be sent again. */
export class NackError extends Error {
  /**
   * @param {number} seq
   * @param {string} deviceId
   * @param {string} reason the server's error text
   */
  constructor(seq, deviceId, reason) {
    super(`record ${deviceId}/${seq} rejected: ${reason}`);
    this.name = 'NackError';
    this.seq = seq;
    this.deviceId = deviceId;
    this.reason = reason;
  }
}

/** `send` was called with outboxLimit records queued. */
export class OutboxFullError extends Error {
  constructor() {
    super('outbox full');
    this.name = 'OutboxFullError';
  }
}

/** The client was closed before the record was acknowledged. */
export class ClosedError extends Error {
  constructor() {
    super('device client closed');
    this.name = 'ClosedError';
  }
}

const OPEN = 1;

/**
 * @typedef {Object} Entry
 * @property {number} seq
 * @property {string} line the record as sent
 * @property {number} bytes UTF-8 length of line
 * @property {number} sends
 * @property {number} ord ordinal on the current connection (0: not sent on it)
 * @property {number} frame records in the frame it was sent in
 * @property {NackError | null} nack
 * @property {((seq: number) => void) | null} resolve
 * @property {((err: Error) => void) | null} reject
 */

/**
 * Sends records to Sluice over one WebSocket connection at a time, resending
 * what is unacknowledged after a reconnect.
 */
export class DeviceClient {
  /**
   * @param {string} url the WebSocket source, e.g. ws://host:8080/ingest
   * @param {DeviceClientOptions} options
   */
  constructor(url, options) {
    const o = options ?? /** @type {DeviceClientOptions} */ ({});
    if (!o.deviceId) {
      throw new TypeError('deviceId is required: records without a device id cannot be deduplicated');
    }
    const WS = o.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof WS !== 'function') {
      throw new TypeError('no WebSocket implementation: on Node 20 pass {WebSocket} from the "ws" package');
    }
    const u = new URL(url);
    if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
      throw new TypeError(`url ${url}: scheme must be ws or wss`);
    }
    u.searchParams.set('device_id', o.deviceId);
    this.url = u.toString();
    this.deviceId = o.deviceId;
    this.window = o.window ?? 1024;
    this.outboxLimit = o.outboxLimit ?? 100_000;
    this.maxRecordBytes = o.maxRecordBytes ?? 1 << 20;
    this.frameLimit = o.maxFrameBytes ?? 64 << 10;
    this.backoff = { initial: 100, max: 5000, multiplier: 2, jitter: 0.5, ...o.backoff };
    this.onNack = o.onNack ?? null;
    this.logger = o.logger ?? {};
    this.WebSocket = WS;
    this.token = o.token ?? null;
    if (typeof this.token !== 'function') protocolsFor(this.token); // a wrong type fails here, not at every reconnect
    this.storage = o.storage ?? null;
    this.storageKey = o.storageKey ?? `sluice-outbox:${o.deviceId}`;
    this.prefix = `{"device_id":${JSON.stringify(o.deviceId)},`;

    /** @type {Entry[]} unsettled records in seq order, from index head */
    this.q = [];
    this.head = 0;
    this.wIdx = 0; // q index of the next record to send on this connection
    this.inflight = 0;
    this.nextOrd = 0;
    this.ackedOrd = 0;
    this.nextSeq = o.firstSeq ?? Date.now() * 1000;
    /** @type {{target: number, resolve: () => void, reject: (e: Error) => void}[]} */
    this.flushers = [];
    /** @type {DeviceStats} */
    this.counts = { sent: 0, resent: 0, acked: 0, nacked: 0, inflight: 0, queued: 0, connects: 0 };
    this.closed = false;
    /** @type {WebSocketLike | null} */
    this.ws = null;
    this.pumpScheduled = false;
    this.attempt = 0;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.reconnectTimer = null;
    /** @type {ReturnType<typeof setTimeout> | null} */
    this.saveTimer = null;
    /** @type {(() => void) | null} */
    this.closedSocket = null;

    this.load();
    this.connect();
  }

  /**
   * Queues record and resolves with its seq once Sluice acknowledged it
   * (every sink made it durable), or rejects with NackError when Sluice
   * rejected it for good. The client adds `device_id` (a record may carry
   * it only with the client's own id) and `seq` (a record must not carry
   * it). Rejects at once with OutboxFullError when outboxLimit records are
   * queued. The promise's rejection need not be handled: nacks also go to
   * onNack and stats.
   * @param {object | string} record a plain object, or its JSON text
   * @returns {Promise<number>}
   */
  send(record) {
    /** @type {Promise<number>} */
    let p;
    try {
      const entry = this.enqueue(record);
      p = new Promise((resolve, reject) => {
        entry.resolve = resolve;
        entry.reject = reject;
      });
    } catch (err) {
      p = Promise.reject(err);
    }
    p.catch(() => {}); // fire-and-forget callers must not crash on a nack
    return p;
  }

  /**
   * @param {object | string} record
   * @returns {Entry}
   */
  enqueue(record) {
    if (this.closed) throw new ClosedError();
    if (this.q.length - this.head >= this.outboxLimit) throw new OutboxFullError();
    const obj = typeof record === 'string' ? JSON.parse(record) : record;
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
      throw new TypeError('a record must be a JSON object');
    }
    if (Object.hasOwn(obj, 'seq')) {
      throw new TypeError('record already has a seq field; the client assigns seq');
    }
    const json = JSON.stringify(obj); // compact: no newline can split the record
    const seq = this.nextSeq;
    let line;
    if (Object.hasOwn(obj, 'device_id')) {
      if (obj.device_id !== this.deviceId) {
        throw new TypeError(`record's device_id ${JSON.stringify(obj.device_id)} differs from the client's ${JSON.stringify(this.deviceId)}`);
      }
      line = `{"seq":${seq}${json.length > 2 ? ',' : ''}${json.slice(1)}`;
    } else {
      line = `${this.prefix}"seq":${seq}${json.length > 2 ? ',' : ''}${json.slice(1)}`;
    }
    const bytes = utf8Length(line);
    if (bytes > this.maxRecordBytes) {
      throw new RangeError(`record of ${bytes} bytes exceeds maxRecordBytes (${this.maxRecordBytes})`);
    }
    this.nextSeq++;
    /** @type {Entry} */
    const e = { seq, line, bytes, sends: 0, ord: 0, frame: 0, nack: null, resolve: null, reject: null };
    this.q.push(e);
    this.scheduleSave();
    this.schedulePump();
    return e;
  }

  /**
   * Resolves once every record sent before the call is settled (acked or
   * nacked). Rejects with ClosedError if the client is closed first.
   * @returns {Promise<void>}
   */
  flush() {
    if (this.closed) return Promise.reject(new ClosedError());
    const target = this.nextSeq - 1;
    if (this.settledThrough(target)) return Promise.resolve();
    return new Promise((resolve, reject) => this.flushers.push({ target, resolve, reject }));
  }

  /** @returns {DeviceStats} */
  get stats() {
    return { ...this.counts, inflight: this.inflight, queued: this.q.length - this.head };
  }

  /**
   * Closes the connection (status 1000) and stops reconnecting. Records not
   * yet acknowledged reject with ClosedError; with `storage` they stay there
   * for the next client. Call flush() first to wait for them.
   * @returns {Promise<void>}
   */
  close() {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.save();
    const err = new ClosedError();
    for (const f of this.flushers.splice(0)) f.reject(err);
    for (let i = this.head; i < this.q.length; i++) {
      const e = this.q[i];
      e.reject?.(err);
      e.resolve = e.reject = null;
    }
    const ws = this.ws;
    if (!ws) return Promise.resolve();
    return new Promise((resolve) => {
      this.closedSocket = resolve;
      try {
        ws.close(1000, 'device client closing');
      } catch {
        resolve();
      }
    });
  }

  // --- connection --------------------------------------------------------

  connect() {
    this.reconnectTimer = null;
    if (this.closed) return;
    let ws;
    try {
      const protocols = protocolsFor(this.token);
      ws = protocols ? new this.WebSocket(this.url, protocols) : new this.WebSocket(this.url);
    } catch (err) {
      this.disconnected(ws, `connect: ${err}`);
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.counts.connects++;
      this.nextOrd = this.ackedOrd = this.inflight = 0;
      this.wIdx = this.head;
      this.logger.info?.('connected', { url: this.url, queued: this.q.length - this.head });
      this.pump();
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      const data = typeof ev.data === 'string' ? ev.data : new TextDecoder().decode(ev.data);
      const problem = this.reply(data);
      if (problem) {
        this.logger.warn?.('dropping the connection', { reason: problem });
        try {
          ws.close(problem.startsWith('protocol') ? 1002 : 1000, problem.slice(0, 120));
        } catch {
          // already closing
        }
        this.disconnected(ws, problem);
      }
    };
    ws.onerror = () => {}; // a close event follows
    ws.onclose = (ev) => {
      if (this.closedSocket && this.closed) {
        this.closedSocket();
        this.closedSocket = null;
      }
      if (ev.code === 1009) this.shrinkFrames(0);
      this.disconnected(ws, `closed with ${ev.code}${ev.reason ? ` (${ev.reason})` : ''}`, ev.code);
    };
  }

  /**
   * Puts everything unacknowledged back to be resent first, and schedules
   * a reconnect.
   * @param {WebSocketLike | undefined} ws
   * @param {string} why
   * @param {number} [code]
   */
  disconnected(ws, why, code) {
    if (ws && this.ws !== ws) return; // already handled
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
    }
    for (let i = this.head; i < this.wIdx; i++) {
      this.q[i].ord = 0;
      this.q[i].frame = 0;
    }
    this.wIdx = this.head;
    this.inflight = this.nextOrd = this.ackedOrd = 0;
    this.popSettled(0);
    if (this.closed) return;
    const b = this.backoff;
    const base = Math.min(b.max, b.initial * b.multiplier ** this.attempt);
    const delay = Math.round(base * (1 - b.jitter + 2 * b.jitter * Math.random()));
    this.attempt++;
    (code === 1001 ? this.logger.info : this.logger.warn)?.('disconnected; reconnecting', { why, retryInMs: delay });
    this.reconnectTimer = setTimeout(() => this.connect(), delay);
  }

  schedulePump() {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Sends what the window allows, several records per frame. */
  pump() {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) return;
    while (this.inflight < this.window && this.wIdx < this.q.length) {
      /** @type {string[]} */
      const lines = [];
      /** @type {Entry[]} */
      const members = [];
      let size = 0;
      while (this.inflight < this.window && this.wIdx < this.q.length) {
        const e = this.q[this.wIdx];
        if (e.nack) {
          this.wIdx++; // nacked on an earlier connection: final
          continue;
        }
        if (members.length > 0 && size + 1 + e.bytes > this.frameLimit) break;
        size += (members.length > 0 ? 1 : 0) + e.bytes;
        lines.push(e.line);
        members.push(e);
        e.ord = ++this.nextOrd;
        if (e.sends > 0) this.counts.resent++;
        else this.counts.sent++;
        e.sends++;
        this.inflight++;
        this.wIdx++;
      }
      if (members.length === 0) break;
      for (const e of members) e.frame = members.length;
      ws.send(lines.join('\n'));
    }
  }

  /**
   * Handles one message from the server; returns a reason to drop the
   * connection, or null.
   * @param {string} data
   * @returns {string | null}
   */
  reply(data) {
    let m;
    try {
      m = JSON.parse(data);
    } catch {
      return `protocol: bad message ${data.slice(0, 80)}`;
    }
    if (typeof m?.ack === 'number') return this.ack(m.ack);
    if (typeof m?.nack === 'number' && m.nack > 0) return this.nack(m);
    return null; // neither ack nor nack: reserved for later protocol versions
  }

  /**
   * @param {number} n cumulative ack: records 1..n of this connection
   * @returns {string | null}
   */
  ack(n) {
    if (n > this.nextOrd) return `protocol: ack ${n} for ${this.nextOrd} records sent`;
    if (n <= this.ackedOrd) return null;
    this.ackedOrd = n;
    this.attempt = 0; // the connection works: next reconnect starts fast
    this.popSettled(n);
    this.pump();
    return null;
  }

  /**
   * @param {{nack: number, seq?: number, device_id?: string, error?: string}} m
   * @returns {string | null}
   */
  nack(m) {
    let e = null;
    for (let i = this.head; i < this.wIdx; i++) {
      if (this.q[i].ord === m.nack) {
        e = this.q[i];
        break;
      }
    }
    if (!e) return `protocol: nack ${m.nack} matches no record in flight`;
    const reason = m.error ?? '';
    if (!m.seq && e.frame > 1) {
      // Our records all carry a seq, so a nack without one rejected a whole
      // frame (too large), which the server counted as one record: the
      // ordinals after it no longer match. Reconnect with smaller frames.
      const limit = /max_record_bytes \((\d+)\)/.exec(reason);
      this.shrinkFrames(limit ? Number(limit[1]) : 0);
      return `server rejected a frame of ${e.frame} records as a whole (${reason})`;
    }
    if (m.seq && m.seq !== e.seq) {
      return `protocol: nack ${m.nack} names seq ${m.seq}, but that record was sent as seq ${e.seq}`;
    }
    e.nack = new NackError(e.seq, this.deviceId, reason);
    this.counts.nacked++;
    this.logger.warn?.('record rejected', { seq: e.seq, reason });
    e.reject?.(e.nack);
    e.resolve = e.reject = null;
    this.onNack?.(e.nack, e.line);
    return null;
  }

  /** @param {number} limit */
  shrinkFrames(limit) {
    const old = this.frameLimit;
    this.frameLimit = Math.max(1, limit > 0 && limit < old ? limit : Math.floor(old / 2));
    this.logger.warn?.('the server refused a frame as too large; sending smaller frames', { maxFrameBytes: this.frameLimit, was: old });
  }

  /**
   * Removes from the front of the outbox what is acked up to ordinal n or
   * nacked, and wakes flushers.
   * @param {number} n
   */
  popSettled(n) {
    const start = this.head;
    while (this.head < this.q.length) {
      const e = this.q[this.head];
      if (e.ord !== 0 && e.ord <= n) {
        this.inflight--;
        if (!e.nack) {
          this.counts.acked++;
          e.resolve?.(e.seq);
        }
      } else if (!(e.ord === 0 && e.nack)) {
        break;
      }
      e.resolve = e.reject = null;
      this.head++;
    }
    if (this.head === start) return;
    this.wIdx = Math.max(this.wIdx, this.head);
    if (this.head > 1024 && this.head * 2 > this.q.length) {
      this.wIdx -= this.head;
      this.q = this.q.slice(this.head);
      this.head = 0;
    }
    if (this.flushers.length > 0) {
      this.flushers = this.flushers.filter((f) => {
        if (!this.settledThrough(f.target)) return true;
        f.resolve();
        return false;
      });
    }
    this.scheduleSave();
  }

  /**
   * @param {number} seq
   * @returns {boolean} whether every record up to seq is settled
   */
  settledThrough(seq) {
    return this.head >= this.q.length || this.q[this.head].seq > seq;
  }

  // --- storage -----------------------------------------------------------

  load() {
    if (!this.storage) return;
    let saved;
    try {
      saved = JSON.parse(this.storage.getItem(this.storageKey) ?? 'null');
    } catch (err) {
      this.logger.warn?.('stored outbox unreadable; starting empty', { error: String(err) });
    }
    if (!saved || saved.v !== 1) return;
    for (const [seq, line] of saved.records) {
      this.q.push({ seq, line, bytes: utf8Length(line), sends: 1, ord: 0, frame: 0, nack: null, resolve: null, reject: null });
    }
    // Records sent after the last save may have used seqs past saved.next:
    // the clock keeps new seqs clear of them.
    this.nextSeq = Math.max(saved.next, this.nextSeq);
  }

  scheduleSave() {
    if (!this.storage || this.saveTimer) return;
    this.saveTimer = setTimeout(() => this.save(), 100);
  }

  save() {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    if (!this.storage) return;
    const records = [];
    for (let i = this.head; i < this.q.length; i++) {
      if (!this.q[i].nack) records.push([this.q[i].seq, this.q[i].line]);
    }
    try {
      this.storage.setItem(this.storageKey, JSON.stringify({ v: 1, next: this.nextSeq, records }));
    } catch (err) {
      this.logger.warn?.('saving the outbox failed (storage quota?)', { error: String(err) });
    }
  }
}

/**
 * @param {string} s
 * @returns {number} the UTF-8 length of s
 */
function utf8Length(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff) i++, (n += 2); // surrogate pair: 4 bytes for 2 units
    else n += 2;
  }
  return n;
}
