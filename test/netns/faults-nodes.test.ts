/**
 * Node faults across hosts (issue 6, item 3), on network namespaces: nodes SIGKILLed (reentrant
 * or not), a link set down and up, a node restarted behind a dead link. Every job ends with
 * exactly one final status. Skipped, with the reason printed, where `ip netns add` is refused.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  skipReason,
  useFaultHarness,
  harness,
  startNodes,
  client,
  spec,
  sleep,
  wave,
  assertOnceEach,
  runningOn,
  stopAll,
} from './fault-suite.js';
import type { NetnsNode } from './harness.js';

describe('node faults across hosts', { skip: skipReason ?? false }, () => {
  useFaultHarness();

  test('a node SIGKILLed mid-run: reentrant jobs run again elsewhere; restarted, it is used again', async () => {
    const nodes = await startNodes();
    const c = client({
      nodes: spec(nodes),
      pulseInterval: 0.5,
      reentrant: true,
      tolerate: ['DISPY_ERR_CONNECTION'],
      waves: [
        { jobs: 3, ms: 2500 },
        { jobs: 9, ms: 150, waitNodes: 3 },
      ],
    });
    let restarted: NetnsNode | undefined;
    try {
      const on = await runningOn(c);
      const victim = nodes[0]!;
      const killedAt = Date.now();
      await victim.stop('SIGKILL');
      const closed = await c.waitFor<{ at: number }>(
        (l) => l.ev === 'node' && l.status === 'Closed' && l.ip === victim.ip,
        10_000,
        'Closed for the killed node',
      );
      assert.ok(closed.at - killedAt <= (5 * 0.5 + 1) * 1000, `declared dead after ${closed.at - killedAt} ms`);
      restarted = await harness!.startNode(victim.host, { cpus: 1, port: victim.port });
      const w0 = await wave(c, 0);
      assert.ok(
        w0.every((j) => j.status === 'Finished' && j.result === 5000),
        JSON.stringify(w0),
      );
      const moved = w0.find((j) => j.id === on.get(victim.ip))!;
      // It ran again: on another node, or on the restarted daemon if that one was free first
      // (the killed attempt itself can never finish: its daemon is gone).
      assert.ok(moved.requeued >= 1 && moved.status === 'Finished', `the killed node's job ran again: ${JSON.stringify(moved)}`);
      assertOnceEach(w0);
      const w1 = await wave(c, 1);
      assert.ok(w1.every((j) => j.status === 'Finished'));
      assert.ok(
        w1.some((j) => j.ip === victim.ip),
        `the restarted node ran jobs: ${JSON.stringify(w1.map((j) => j.ip))}`,
      );
      assertOnceEach(w1);
      await c.waitFor((l) => l.ev === 'end', 10_000, 'end');
    } finally {
      await stopAll(restarted ? [...nodes, restarted] : nodes, c);
    }
  });

  test('a node SIGKILLed mid-run, not reentrant: its job ends Abandoned, the others finish', async () => {
    const nodes = await startNodes();
    const c = client({ nodes: spec(nodes), pulseInterval: 0.5, tolerate: ['DISPY_ERR_CONNECTION'], waves: [{ jobs: 3, ms: 2000 }] });
    try {
      const on = await runningOn(c);
      const victim = nodes[1]!;
      await victim.stop('SIGKILL');
      const w0 = await wave(c, 0);
      const lost = w0.find((j) => j.id === on.get(victim.ip))!;
      assert.equal(lost.status, 'Abandoned', JSON.stringify(lost));
      assert.match(lost.exception ?? '', /lost/);
      assert.ok(w0.filter((j) => j !== lost).every((j) => j.status === 'Finished' && j.ip !== victim.ip));
      assertOnceEach(w0);
    } finally {
      await stopAll(nodes, c);
    }
  });

  test('a link set down: the node is declared dead within 5 × pulseInterval; back up, it is used again', async () => {
    const nodes = await startNodes();
    const c = client({
      nodes: spec(nodes),
      pulseInterval: 0.5,
      reentrant: true,
      waves: [
        { jobs: 3, ms: 3000 },
        { jobs: 9, ms: 150, waitNodes: 3 },
      ],
    });
    const victim = nodes[2]!;
    try {
      const on = await runningOn(c);
      const downAt = Date.now();
      harness!.setLink(victim.host, false);
      const closed = await c.waitFor<{ at: number }>(
        (l) => l.ev === 'node' && l.status === 'Closed' && l.ip === victim.ip,
        10_000,
        'Closed for the cut-off node',
      );
      assert.ok(closed.at - downAt <= (5 * 0.5 + 1) * 1000, `declared dead after ${closed.at - downAt} ms`);
      // The node, hearing no heartbeat either, closes the client's connection (its jobs wait).
      const deadline = Date.now() + 10_000;
      while (!/client sent no heartbeat/.test(victim.log()) && Date.now() < deadline) await sleep(100);
      assert.match(victim.log(), /client sent no heartbeat/);
      harness!.setLink(victim.host, true);
      const w0 = await wave(c, 0);
      const moved = w0.find((j) => j.id === on.get(victim.ip))!;
      assert.ok(moved.requeued >= 1 && moved.ip !== victim.ip && moved.status === 'Finished', JSON.stringify(moved));
      assert.ok(w0.every((j) => j.status === 'Finished'));
      assertOnceEach(w0);
      const w1 = await wave(c, 1);
      assert.ok(
        w1.some((j) => j.ip === victim.ip),
        `the node is used again: ${JSON.stringify(w1.map((j) => j.ip))}`,
      );
      assertOnceEach(w1);
      // Back in touch, the client told the node to stop the attempt it had given up.
      assert.match(victim.log(), /client resumed its jobs/);
    } finally {
      harness!.setLink(victim.host, true);
      await stopAll(nodes, c);
    }
  });

  test('a node restarted behind a dead link is told apart from one whose link returned', async () => {
    const nodes = await startNodes();
    // pulseInterval 2: 3 s without a link is not death (10 s would be).
    const c = client({ nodes: spec(nodes), pulseInterval: 2, reentrant: true, waves: [{ jobs: 3, ms: 5000 }] });
    let restarted: NetnsNode | undefined;
    const [same, other] = [nodes[0]!, nodes[1]!];
    try {
      const on = await runningOn(c);
      harness!.setLink(same.host, false);
      harness!.setLink(other.host, false);
      await other.stop('SIGKILL');
      restarted = await harness!.startNode(other.host, { cpus: 1, port: other.port });
      await sleep(1500);
      harness!.setLink(same.host, true);
      harness!.setLink(other.host, true);
      const w0 = await wave(c, 0);
      assert.ok(
        w0.every((j) => j.status === 'Finished'),
        JSON.stringify(w0),
      );
      const kept = w0.find((j) => j.id === on.get(same.ip))!;
      assert.deepEqual([kept.ip, kept.requeued], [same.ip, 0], 'the link came back: the job went on where it was');
      const rerun = w0.find((j) => j.id === on.get(other.ip))!;
      assert.equal(rerun.requeued, 1, `the restarted node's job ran again: ${JSON.stringify(rerun)}`);
      assertOnceEach(w0);
      assert.match(c.stderr(), /restarted/, 'the client says the node restarted');
    } finally {
      harness!.setLink(same.host, true);
      harness!.setLink(other.host, true);
      await stopAll(restarted ? [...nodes, restarted] : nodes, c);
    }
  });
});
