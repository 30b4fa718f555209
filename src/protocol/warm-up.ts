/**
 * First-use work of the protocol done ahead of need: zod compiles a schema's parser the first
 * time it parses (a few ms per message kind), msgpackr and HMAC set themselves up on their first
 * call. A daemon runs this while it waits for its first client, and a client for the messages it
 * is about to receive while it waits for its node, so a new program's first job does not pay for
 * it. Sample messages only: nothing is sent, and nothing is kept but the compiled code.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ZodType } from 'zod';
import { clientMessageSchema, handshakeSchema, nodeMessageSchema } from './messages.js';
import { packMessage, unpackMessages } from './wire-codec.js';

const bytes = (n: number): Uint8Array => new Uint8Array(n);

/** One valid message of each kind that a first job's exchange carries, per direction. */
const HANDSHAKE = [
  { t: 'hello', v: 1, role: 'client', nonce: bytes(16), clientId: 'warm-up' },
  { t: 'hello', v: 1, role: 'node', nonce: bytes(16), proof: bytes(32) },
  { t: 'auth', proof: bytes(32) },
  { t: 'auth-ok' },
];
const FROM_CLIENT = [
  {
    t: 'setup',
    rid: 1,
    computeId: 'warm-up',
    cluster: 'warm-up',
    computation: { kind: 'function', name: 'warm', source: '(x) => x * 2', depends: [] },
    cpus: 0,
    pulseInterval: 0,
  },
  { t: 'job', uid: 1, computeId: 'warm-up', args: bytes(4), maxRuntime: 0, files: [], tag: 1 },
  { t: 'beat', every: 10 },
  { t: 'ping', rid: 1 },
  { t: 'close', rid: 1, computeId: 'warm-up', terminate: false },
];
const FROM_NODE = [
  {
    t: 'info',
    nodeId: 'warm-up',
    name: 'warm-up',
    ipAddr: '127.0.0.1',
    port: 1,
    machineCpus: 1,
    cpus: 1,
    platform: 'warm-up',
    availInfo: { cpu: 1, memory: 1, disk: 1, swap: 1 },
    busy: false,
    maxMessageSize: 1024,
  },
  { t: 'reply', rid: 1, ok: true, cpus: 1 },
  { t: 'started', uid: 1, startTime: 1 },
  {
    t: 'done',
    uid: 1,
    status: 'Finished',
    result: bytes(4),
    exception: null,
    code: null,
    stdout: '',
    stderr: '',
    startTime: 1,
    endTime: 2,
    cpuTime: 0,
    tag: 1,
  },
  { t: 'pulse', availInfo: null, busy: 0, cpus: 1 },
];

/** The samples, for the test that checks each parses (the success path is what jobs take). */
export const WARM_UP_SAMPLES = { handshake: HANDSHAKE, fromClient: FROM_CLIENT, fromNode: FROM_NODE } as const;

function through(schema: ZodType, samples: readonly object[], times: number): void {
  for (let i = 0; i < times; i++) {
    for (const s of samples) {
      unpackMessages(packMessage(s), (v) => {
        schema.safeParse(v);
      });
    }
  }
}

function hmac(): void {
  const key = randomBytes(32);
  const a = createHmac('sha256', key).update('warm-up').update(bytes(16)).digest();
  const b = createHmac('sha256', key).update('warm-up').update(bytes(16)).digest();
  timingSafeEqual(a, b);
}

/**
 * What a node (or a scheduler, which speaks the node's protocol to its clients) parses and sends:
 * the handshake, clients' messages, its own replies. A few ms, once.
 */
export function warmUpServer(): void {
  hmac();
  through(handshakeSchema, HANDSHAKE, 3);
  through(clientMessageSchema, FROM_CLIENT, 3);
  for (const s of FROM_NODE) packMessage(s);
}

let clientWarm = false;

/**
 * What a client parses once connected (a node's info, replies, a job's started and done), one
 * kind per event-loop turn, so a message that arrives meanwhile waits for one kind at most. Once
 * per process.
 */
export function warmUpClient(): void {
  if (clientWarm) return;
  clientWarm = true;
  let i = 0;
  const next = (): void => {
    const s = FROM_NODE[i++];
    if (!s) return;
    through(nodeMessageSchema, [s], 2);
    setImmediate(next).unref();
  };
  setImmediate(next).unref();
}
