/**
 * Client faults across hosts (issue 6, item 4), on network namespaces: a client paused past the
 * nodes' heartbeat limit, a client SIGKILLed, results recovered with recoverJobs. Skipped, with
 * the reason printed, where `ip netns add` is refused.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TEST_SECRET } from '../helpers/daemon.js';
import { join } from 'node:path';
import {
  skipReason,
  useFaultHarness,
  harness,
  hosts,
  scratch,
  startNodes,
  client,
  spec,
  sleep,
  wave,
  assertOnceEach,
  runningOn,
  stopAll,
  type Line,
} from './fault-suite.js';
import type { LiveClient } from './harness.js';

describe('client faults across hosts', { skip: skipReason ?? false }, () => {
  useFaultHarness();

  test("a client paused past the node's heartbeat limit gets the results the node kept", async () => {
    const nodes = await startNodes(['--zombie-interval', '60']);
    const c = client({ nodes: spec(nodes), pulseInterval: 1, waves: [{ jobs: 3, ms: 7000 }] });
    try {
      const on = await runningOn(c);
      c.proc.kill('SIGSTOP');
      // The nodes close the silent client's connection after 5 s and the jobs end at 7 s; the
      // client is back at 8 s, within the 5 s (5 × pulseInterval) the nodes wait for it then.
      await sleep(8000);
      c.proc.kill('SIGCONT');
      const w0 = await wave(c, 0);
      for (const j of w0) {
        assert.equal(j.status, 'Finished', JSON.stringify(j));
        assert.equal(j.requeued, 0, `${j.id} was not run again`);
      }
      assert.deepEqual(new Set(w0.map((j) => `${j.id}@${j.ip}`)), new Set([...on].map(([ip, id]) => `${id}@${ip}`)));
      assertOnceEach(w0);
      for (const n of nodes) {
        assert.match(n.log(), /client sent no heartbeat/);
        assert.match(n.log(), /"delivered":1[,}].*client resumed its jobs|client resumed its jobs.*"delivered":1/);
      }
    } finally {
      if (c.proc.signalCode === null) c.proc.kill('SIGCONT');
      await stopAll(nodes, c);
    }
  });

  test('a client SIGKILLed mid-run: its jobs end after the zombie interval and a second client gets the CPUs', async () => {
    const nodes = await startNodes(['--zombie-interval', '1']);
    const a = client({ nodes: spec(nodes), waves: [{ jobs: 3, ms: 30_000 }] });
    let b: LiveClient | undefined;
    try {
      await runningOn(a);
      b = client({ nodes: spec(nodes), tolerate: ['DISPY_ERR_NODE_BUSY'], waves: [{ jobs: 6, ms: 200, waitNodes: 3 }] });
      await sleep(500);
      const killedAt = Date.now();
      a.proc.kill('SIGKILL');
      const ready = await b.waitFor<{ nodes: string[] }>((l: Line) => l.ev === 'ready', 15_000, 'the second client set up on the nodes');
      assert.deepEqual(ready.nodes, nodes.map((n) => n.ip).sort());
      const w0 = await wave(b, 0);
      assert.ok(w0.every((j) => j.status === 'Finished'));
      assertOnceEach(w0);
      for (const n of nodes) assert.match(n.log(), /client did not return: terminating its jobs/);
      process.stdout.write(`# second client set up ${Date.now() - killedAt} ms after the first was killed\n`);
    } finally {
      await stopAll(nodes, a, ...(b ? [b] : []));
    }
  });

  test('recoverJobs fetches the results of a SIGKILLed client, once; terminatePending ends the rest', async () => {
    const nodes = await startNodes(['--zombie-interval', '60']);
    const recoverFile = join(scratch, 'crashed.recover.json');
    const a = client({ nodes: spec(nodes), recoverFile, waves: [{ jobs: 3, ms: 1500 }] });
    const recover = async (extra: Record<string, unknown> = {}) => {
      const r = await harness!.runClient(hosts[3]!, 'recover-client', [JSON.stringify({ recoverFile, secret: TEST_SECRET, ...extra })]);
      return r.json as {
        jobs?: { id: string; status: string; result: unknown; ip: string | null }[];
        error?: { code: string; message: string };
      };
    };
    try {
      await runningOn(a);
      a.proc.kill('SIGKILL');
      const got = await recover();
      assert.deepEqual(
        got.jobs?.map((j) => [j.id, j.status, j.result]),
        [0, 1, 2].map((i) => [`w0-${i}`, 'Finished', 3000]),
        JSON.stringify(got),
      );
      assert.deepEqual(new Set(got.jobs!.map((j) => j.ip)), new Set(nodes.map((n) => n.ip)));
      assert.deepEqual((await recover()).jobs, [], 'each result is handed out once');

      // Jobs that would run for a long time: terminated on request.
      // (The nodes free themselves once the recovery found nothing pending; a client that comes
      // a moment early is told they are busy and tries again.)
      const a2 = client({ nodes: spec(nodes), recoverFile, tolerate: ['DISPY_ERR_NODE_BUSY'], waves: [{ jobs: 3, ms: 60_000 }] });
      await runningOn(a2);
      a2.proc.kill('SIGKILL');
      await a2.result;
      const t0 = Date.now();
      const ended = await recover({ terminatePending: true });
      assert.deepEqual(
        ended.jobs?.map((j) => [j.id, j.status]),
        [0, 1, 2].map((i) => [`w0-${i}`, 'Terminated']),
        JSON.stringify(ended),
      );
      assert.ok(Date.now() - t0 < 20_000);
      // The nodes are free again for another client.
      const b = client({ nodes: spec(nodes), tolerate: ['DISPY_ERR_NODE_BUSY'], waves: [{ jobs: 3, ms: 100, waitNodes: 3 }] });
      const w0 = await wave(b, 0, 20_000);
      assert.ok(w0.every((j) => j.status === 'Finished'));
      await b.result;
    } finally {
      await stopAll(nodes, a);
    }
  });
});
