// Sluice device client: push JSON records to Sluice over WebSocket, with
// acks, resends after reconnects and a bounded outbox. See README.md and
// docs/protocol.md.
export { DeviceClient, NackError, OutboxFullError, ClosedError } from './device.js';
export { subscribe } from './subscribe.js';
export { tokenProtocol, SUBPROTOCOL } from './auth.js';
