/**
 * A cancel always reaches the job it names, and `cancel()` resolves with the truth: a cancel
 * made while the connection to the node is down is passed on once it is back; a job the node
 * hands back (drained) after the cancel was sent is not run again; a reentrant job whose node
 * died before acting on the cancel is not re-run elsewhere. Real daemons on 127.0.0.124 (with
 * its page, to drain it), 127.0.0.126 and 127.0.0.127; a TCP proxy on 127.0.0.125 breaks and
 * holds up the client's connection to 127.0.0.124.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { DispyJob, JobCluster } from '../src/index.js';
import { TEST_SECRET, startNode, until, within, type TestNode } from './helpers/daemon.js';
import { request } from './helpers/http-client.js';
import { startTcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const ADMIN = 'admin-token-for-node-124';
let node: TestNode;
let proxy: TcpProxy;
let pageUrl: string;

before(async () => {
  node = await startNode({ host: '127.0.0.124', cpus: 1, logLevel: 'info', args: ['--httpd', '127.0.0.124:0', '--httpd-token', ADMIN] });
  pageUrl = (await until(() => /node page on (\S+)/.exec(node.stdout())?.[1], 10_000, "the node page's URL"))!;
  proxy = await startTcpProxy('127.0.0.125', { host: node.host, port: node.port });
});

after(async () => {
  await proxy?.close();
  await node?.stop();
});

async function sleepFor(ms: number) {
  await new Promise((r) => setTimeout(r, ms));
  return ms;
}

function viaProxy(): JobCluster<typeof sleepFor> {
  return new JobCluster(sleepFor, { nodes: [{ host: proxy.host, port: proxy.port }], secret: TEST_SECRET });
}

function starts(cluster: JobCluster): Map<unknown, number> {
  const n = new Map<unknown, number>();
  cluster.on('status', (e) => {
    if (e.status === DispyJob.Running && e.job) n.set(e.job.id, (n.get(e.job.id) ?? 0) + 1);
  });
  return n;
}

const nodeAction = (path: string, body: string) =>
  request(`${pageUrl}${path}`, {
    method: 'POST',
    body,
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/x-www-form-urlencoded' },
  });

test('a cancel made while the connection is down reaches the running job once it is back', async () => {
  const cluster = viaProxy();
  const ran = starts(cluster);
  try {
    const job = cluster.submit(4000);
    await until(() => ran.get(job.id) === 1, 15_000, 'the job to run');
    const before = proxy.accepted;
    proxy.hold();
    proxy.cut();
    // The cluster reconnects at once; the proxy holds that connection up.
    await until(() => proxy.accepted > before, 5_000, 'the reconnection attempt');
    const cancelled = cluster.cancel(job);
    proxy.release();
    assert.equal(await within(cancelled, 10_000, 'cancel()'), 0);
    assert.equal(job.status, DispyJob.Terminated, `the job was killed, not left to finish: ${job.exception}`);
    assert.match(job.exception ?? '', /terminated on request of the client/);
    assert.equal(ran.get(job.id), 1);
  } finally {
    proxy.release();
    await cluster.close({ terminate: true });
  }
});

test('a job the node hands back after its cancel was sent ends Cancelled instead of running again', async () => {
  const cluster = viaProxy();
  const ran = starts(cluster);
  try {
    // Once the node's job time is known, a second job waits there behind the running one.
    assert.equal(await cluster.submit(100).wait(), 100);
    const running = cluster.submit(3000);
    const waiting = cluster.submit(3000);
    const onNode = async () =>
      (await request(`${pageUrl}status.json`, { headers: { authorization: `Bearer ${ADMIN}` } })).json<{ jobs: unknown[] }>().jobs.length;
    await until(async () => ran.get(running.id) === 1 && (await onNode()) === 2, 15_000, 'both jobs on the node');
    // The cancel is on its way (held up) when the node hands the waiting job back.
    proxy.pauseUpstream();
    const cancelled = cluster.cancel(waiting);
    assert.equal((await nodeAction('drain', 'drain=on')).status, 200);
    assert.equal(await within(cancelled, 10_000, 'cancel()'), 0);
    assert.equal(waiting.status, DispyJob.Cancelled);
    assert.equal(ran.get(waiting.id), undefined, 'it never ran');
    proxy.resumeUpstream();
    assert.equal((await nodeAction('drain', 'drain=off')).status, 200);
    assert.equal(await within(running.wait(), 10_000, 'the running job'), 3000);
    assert.equal(ran.get(waiting.id), undefined, 'and it does not run later either');
  } finally {
    proxy.resumeUpstream();
    await nodeAction('drain', 'drain=off');
    await cluster.close({ terminate: true });
  }
});

test('a reentrant job whose node dies before acting on its cancel is not run again elsewhere', async () => {
  const [x, y] = await Promise.all([
    startNode({ host: '127.0.0.126', cpus: 1, logLevel: 'info' }),
    startNode({ host: '127.0.0.127', cpus: 1, logLevel: 'info' }),
  ]);
  const cluster = new JobCluster(sleepFor, {
    nodes: [x, y].map((n) => ({ host: n.host, port: n.port })),
    secret: TEST_SECRET,
    reentrant: true,
  });
  const ran = starts(cluster);
  try {
    await until(() => cluster.status().nodes.length === 2, 15_000, 'both nodes');
    const job = cluster.submit(5000);
    await until(() => ran.get(job.id) === 1, 10_000, 'the job to run');
    const victim = job.ipAddr === x.host ? x : y;
    // The node cannot act on the cancel, then dies.
    process.kill(victim.pid, 'SIGSTOP');
    const cancelled = cluster.cancel(job);
    await victim.stop('SIGKILL');
    assert.equal(await within(cancelled, 15_000, 'cancel()'), 0);
    assert.equal(job.status, DispyJob.Abandoned, `not re-run: ${job.exception}`);
    assert.equal(ran.get(job.id), 1, 'it ran once');
    // The other node goes on serving.
    assert.equal(await within(cluster.submit(10).wait(), 10_000, 'a job on the other node'), 10);
  } finally {
    await cluster.close({ terminate: true });
    await Promise.all([x.stop('SIGKILL'), y.stop()]);
  }
});
