/**
 * A node that stops answering (SIGSTOPped: its connection stays open, its heartbeats stop) is
 * declared dead within 5 × pulseInterval: Closed fires, its jobs re-run elsewhere under a new
 * attempt (reentrant) or end Abandoned, each job settles once, and a late reply from the node
 * changes nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyJob, DispyNode, isFinal, type ClusterStatusEvent } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';

const PULSE = 0.2;

async function scenario(reentrant: boolean, hosts: [string, string]) {
  const [a, b] = (await Promise.all(hosts.map((host) => startNode({ host, cpus: 1 })))) as [TestNode, TestNode];
  const events: (ClusterStatusEvent & { at: number })[] = [];
  const cluster = new JobCluster(
    async (ms: number) => {
      await new Promise((r) => setTimeout(r, ms));
      return process.pid;
    },
    { nodes: [a, b].map((n) => ({ host: n.host, port: n.port })), secret: TEST_SECRET, pulseInterval: PULSE, reentrant },
  );
  cluster.on('status', (e) => events.push({ ...e, at: Date.now() }));
  let stoppedAt = 0;
  try {
    await until(() => cluster.status().nodes.length === 2, 10_000, 'two nodes');
    const jobs = Array.from({ length: 4 }, () => cluster.submit(1500));
    await until(() => jobs.filter((j) => j.status === DispyJob.Running).length === 2, 10_000, 'a job running on each node');
    const onA = jobs.find((j) => j.status === DispyJob.Running && j.ipAddr === a.host)!;
    process.kill(a.pid, 'SIGSTOP');
    stoppedAt = Date.now();
    const closed = await until(
      () => events.find((e) => e.status === DispyNode.Closed && e.node?.ipAddr === a.host),
      10_000,
      'Closed for the silent node',
    );
    const detectedMs = closed!.at - stoppedAt;
    assert.ok(detectedMs <= (5 * PULSE + 1) * 1000, `declared dead after ${detectedMs} ms (bound ${(5 * PULSE + 1) * 1000} ms)`);
    const outcomes = await Promise.allSettled(jobs.map((j) => j.wait()));
    return { a, b, cluster, jobs, onA, outcomes, events };
  } finally {
    if (stoppedAt) process.kill(a.pid, 'SIGCONT');
  }
}

function finalsPerJob(events: ClusterStatusEvent[]): Map<unknown, number> {
  const counts = new Map<unknown, number>();
  for (const e of events) if (e.job && isFinal(e.status)) counts.set(e.job.id, (counts.get(e.job.id) ?? 0) + 1);
  return counts;
}

test("reentrant: the dead node's job runs again elsewhere; a late reply is discarded", async () => {
  const { a, b, cluster, jobs, onA, outcomes, events } = await scenario(true, ['127.0.0.140', '127.0.0.141']);
  try {
    assert.ok(
      outcomes.every((o) => o.status === 'fulfilled'),
      'every job finished',
    );
    assert.ok(jobs.every((j) => j.status === DispyJob.Finished));
    assert.equal(onA.ipAddr, b.host, 'the job of the dead node ran again on the other one');
    assert.ok(
      events.some((e) => e.status === DispyJob.Created && e.job === onA && e.node?.ipAddr === a.host),
      'Created (re-queued) with the dead node',
    );
    const before = { endTime: onA.endTime, ipAddr: onA.ipAddr, result: onA.result };
    // The node wakes up; its runner finished the old attempt meanwhile and the reply comes late.
    await until(
      () => events.filter((e) => e.status === DispyNode.Initialized && e.node?.ipAddr === a.host).length === 2,
      15_000,
      'the node to be used again',
    );
    await new Promise((r) => setTimeout(r, 500));
    assert.deepEqual({ endTime: onA.endTime, ipAddr: onA.ipAddr, result: onA.result }, before, 'a late reply changed nothing');
    assert.ok(
      [...finalsPerJob(events).values()].every((n) => n === 1),
      'exactly one final status per job',
    );
  } finally {
    await cluster.close({ terminate: true });
    await Promise.all([a.stop(), b.stop()]);
  }
});

test("not reentrant: the dead node's job ends Abandoned; the others finish", async () => {
  const { a, b, cluster, jobs, onA, outcomes, events } = await scenario(false, ['127.0.0.142', '127.0.0.143']);
  try {
    assert.equal(onA.status, DispyJob.Abandoned);
    const rejected = outcomes[jobs.indexOf(onA)]!;
    assert.equal(rejected.status, 'rejected');
    assert.equal((rejected as PromiseRejectedResult).reason.code, 'DISPY_ERR_JOB_ABANDONED');
    assert.match(onA.exception!, /declared dead/);
    assert.ok(jobs.filter((j) => j !== onA).every((j) => j.status === DispyJob.Finished && j.ipAddr === b.host));
    assert.ok(
      [...finalsPerJob(events).values()].every((n) => n === 1),
      'exactly one final status per job',
    );
  } finally {
    await cluster.close({ terminate: true });
    await Promise.all([a.stop(), b.stop()]);
  }
});
