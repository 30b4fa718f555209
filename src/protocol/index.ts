/** The wire protocol: frames, messages, authenticated channels, secrets and payloads. */
export * from './constants.js';
export * from './frame.js';
export * from './messages.js';
export * from './channel.js';
export * from './secret.js';
export * from './tls.js';
export * from './payload.js';
export * from './wire-codec.js';
export * from './discovery.js';
export * from './scheduler-messages.js';
