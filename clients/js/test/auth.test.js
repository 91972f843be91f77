// Unit tests of the token subprotocol: what DeviceClient and subscribe()
// offer the server, and that a 4403 close stops a subscription.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { DeviceClient, subscribe, tokenProtocol } from '../index.js';

/** A WebSocket stand-in that records what it was constructed with. */
function fakeWebSocket() {
  const made = [];
  class Fake {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      made.push(this);
    }
    send() {}
    close() {}
  }
  return { Fake, made };
}

test('tokenProtocol is sluice.bearer. and the token in unpadded base64url', () => {
  assert.equal(tokenProtocol('abc'), 'sluice.bearer.YWJj');
  // bytes that base64 writes as + and /, and a multi-byte character
  assert.equal(tokenProtocol('\u00fb\u00ff'), 'sluice.bearer.w7vDvw');
  assert.equal(tokenProtocol('>>?'), 'sluice.bearer.Pj4_');
  assert.match(tokenProtocol('eyJhbGciOi.J9.x-y_z'), /^sluice\.bearer\.[A-Za-z0-9_-]+$/);
});

test('DeviceClient offers sluice and the token, asking a token function at every connect', () => {
  const { Fake, made } = fakeWebSocket();
  let n = 0;
  const c = new DeviceClient('wss://h/ingest', { deviceId: 'd', WebSocket: Fake, token: () => `tok-${++n}` });
  assert.deepEqual(made[0].protocols, ['sluice', tokenProtocol('tok-1')]);
  assert.ok(!made[0].url.includes('tok'), 'the token is in the URL');
  c.close();
  const plain = new DeviceClient('ws://h/ingest', { deviceId: 'd', WebSocket: Fake });
  assert.equal(made[1].protocols, undefined);
  plain.close();
  assert.throws(() => new DeviceClient('ws://h/ingest', { deviceId: 'd', WebSocket: Fake, token: 42 }), TypeError);
});

test('subscribe offers the token and stops on 4403', async () => {
  const { Fake, made } = fakeWebSocket();
  const errors = [];
  const sub = subscribe('wss://h/subscribe', 'telemetry', { WebSocket: Fake, token: 'jwt.a.b', onError: (e) => errors.push(e) }, () => {});
  assert.deepEqual(made[0].protocols, ['sluice', tokenProtocol('jwt.a.b')]);
  made[0].onclose({ code: 4403, reason: 'topic "telemetry" is not granted by the token (claim topics)' });
  assert.equal(sub.closed, true);
  assert.match(errors[0].message, /4403.*not granted/);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(made.length, 1, 'reconnected after 4403');
});
