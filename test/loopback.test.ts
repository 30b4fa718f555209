/**
 * The loopback test (src/protocol/loopback.ts), written once with its two meanings: an address
 * on loopback (a peer to trust), and a host that keeps a daemon on this machine (`localhost`
 * included). Every daemon and server asks one of these two.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { discoveryInterface } from '../src/protocol/discovery.js';
import { isLoopbackAddress, isLoopbackHost } from '../src/protocol/loopback.js';
import { resolveAuth } from '../src/httpd/security.js';
import { NodeDaemon } from '../src/node/node-daemon.js';
import { SchedulerDaemon } from '../src/scheduler/scheduler-daemon.js';

test('a loopback address: 127.0.0.0/8, ::1, mapped or bracketed; never a name', () => {
  for (const a of ['127.0.0.1', '127.0.0.15', '127.255.255.254', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.9', '::FFFF:127.0.0.1'])
    assert.equal(isLoopbackAddress(a), true, a);
  for (const a of ['localhost', '10.0.0.1', '128.0.0.1', '127.example.com', '127.0.0', '', null, undefined, '::2', '0.0.0.0'])
    assert.equal(isLoopbackAddress(a), false, String(a));
});

test('a loopback host: localhost or a loopback address; a name that merely starts with 127. is not one', () => {
  for (const h of ['localhost', '127.0.0.1', '127.0.0.15', '::1', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['127.example.com', 'localhost.example.com', '0.0.0.0', '', '192.0.2.1', '::']) assert.equal(isLoopbackHost(h), false, h);
});

test('every party asks the same question: secrets, discovery and the HTTP token agree on what is loopback', () => {
  for (const host of ['127.0.0.15', '::1', 'localhost', '127.example.com', '192.0.2.1']) {
    const local = isLoopbackHost(host);
    // A node or scheduler beyond loopback needs a secret (or --insecure).
    assert.equal(
      (() => {
        try {
          new NodeDaemon({ host, cpus: 1, logLevel: 'silent' });
          return true;
        } catch {
          return false;
        }
      })(),
      local,
      `node on ${host}`,
    );
    assert.equal(
      (() => {
        try {
          new SchedulerDaemon({ host, logLevel: 'silent' });
          return true;
        } catch {
          return false;
        }
      })(),
      local,
      `scheduler on ${host}`,
    );
    // The HTTP server needs no token only when it listens only on loopback.
    assert.equal(resolveAuth(host, undefined).token === null, local, `httpd on ${host}`);
    // Discovery never runs on loopback.
    if (local) assert.match(discoveryInterface(host) as string, /loopback address/);
  }
});
