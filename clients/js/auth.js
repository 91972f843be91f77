// Bearer tokens over WebSocket. Browsers cannot set an Authorization header
// on a WebSocket, so the token travels as a subprotocol: the client offers
// "sluice" and "sluice.bearer.<the token in unpadded base64url>", and the
// server, once the token checks out, selects "sluice" (it never echoes the
// token). A header is not a URL: the token stays out of access logs and
// browser history. See docs/security.md.

/** The subprotocol the server selects. */
export const SUBPROTOCOL = 'sluice';
/** Prefix of the subprotocol that carries the token. */
export const TOKEN_PROTOCOL_PREFIX = 'sluice.bearer.';

/**
 * The subprotocol that carries token.
 * @param {string} token
 * @returns {string}
 */
export function tokenProtocol(token) {
  const bytes = new TextEncoder().encode(token);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return TOKEN_PROTOCOL_PREFIX + btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * The protocols argument of `new WebSocket(url, protocols)` for a token
 * option: a string, a function returning one (called at every connect, so
 * that a renewed JWT is used after a reconnect), or nothing.
 * @param {string | (() => string) | undefined | null} token
 * @returns {string[] | undefined}
 */
export function protocolsFor(token) {
  const t = typeof token === 'function' ? token() : token;
  if (t === undefined || t === null || t === '') return undefined;
  if (typeof t !== 'string') throw new TypeError('token must be a string or a function returning one');
  return [SUBPROTOCOL, tokenProtocol(t)];
}
