/**
 * The scheduler's --httpd: one DispyHTTPServer over every client's cluster, under the unique
 * names the scheduler gave them, with the jobs' arguments as the clients encoded them; a closed
 * cluster stays visible.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobStatus } from '../src/client/status.js';
import { startNode, until, type TestNode } from './helpers/daemon.js';
import { request } from './helpers/http-client.js';
import { RawClient, fn, startScheduler, type TestScheduler } from './helpers/scheduler.js';

let node: TestNode;
let sched: TestScheduler;

before(async () => {
  node = await startNode({ host: '127.0.0.223', cpus: 2 });
  sched = await startScheduler({ host: '127.0.0.224', nodes: [`${node.host}:${node.port}`], args: ['--httpd', '127.0.0.224:0'] });
});

after(async () => {
  await sched?.stop();
  await node?.stop();
});

interface ClusterJson {
  name: string;
  jobs: { submitted: number; done: number; queued: number; running: number; failed: number };
  nodes: { ip_addr: string }[];
}

test('--httpd shows both clients clusters, their jobs and nodes; a closed one stays visible', async () => {
  assert.ok(sched.httpUrl);
  const a = await RawClient.connect(sched, { localAddress: '127.0.0.225' });
  const b = await RawClient.connect(sched, { localAddress: '127.0.0.226' });
  const work = fn('async function work(x) { await new Promise((r) => setTimeout(r, x)); return x; }', 'work');
  const ca = await a.start(work);
  const cb = await b.start(work);
  for (const [c, id] of [
    [a, ca.computeId],
    [b, cb.computeId],
  ] as const) {
    for (const x of [5, 10]) assert.equal((await c.jobEnd(c.job(id, [x]))).status, JobStatus.Finished);
  }
  // A job still running shows its arguments as the client encoded them.
  const long = b.job(cb.computeId, [20_000]);
  await b.waitFor((m) => m.t === 'job-status' && m.uid === long && m.status === JobStatus.Running);
  const status = async (): Promise<ClusterJson[]> => {
    const r = await request(`${sched.httpUrl}/cluster_status`);
    assert.equal(r.status, 200, r.body);
    return r.json<ClusterJson[]>();
  };
  const clusters = await until(
    async () => {
      const all = await status();
      const x = all.find((c) => c.name === 'work @ 127.0.0.225');
      const y = all.find((c) => c.name === 'work @ 127.0.0.226');
      return x?.jobs.done === 2 && y?.jobs.running === 1 ? { x, y } : null;
    },
    10_000,
    'both clusters in /cluster_status',
  );
  assert.equal(clusters!.x.nodes[0]?.ip_addr, node.host);
  assert.equal(clusters!.y.jobs.done, 2);
  const info = await request(`${sched.httpUrl}/node_info`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: `host=${node.host}`,
  });
  assert.equal(info.status, 200, info.body);
  assert.match(info.body, /20000/);
  await a.request({ t: 'close', computeId: ca.computeId, terminate: false });
  const after = await status();
  assert.ok(
    after.some((c) => c.name === 'work @ 127.0.0.225'),
    'a closed cluster stays visible',
  );
  await b.request({ t: 'close', computeId: cb.computeId, terminate: true });
  a.close();
  b.close();
});
