/**
 * How clusters reach a DispyHTTPServer: the seed's two chaining patterns (a user callback that
 * calls httpServer.clusterStatus; a second cluster created with `clusterStatus:
 * httpServer.clusterStatus`), addCluster/delCluster, unique names, never a double count; two
 * servers side by side; shutdown with and without waiting while an SSE stream is open; options.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { JobCluster, DispyHTTPServer, type DispyStatus, type DispyNode, type DispyJob } from '../src/index.js';
import { TEST_SECRET, startNodes, until, type TestNode } from './helpers/daemon.js';
import { SseViewer, request } from './helpers/http-client.js';
import { C, compute, startServer } from './helpers/httpd.js';

let nodes: TestNode[];
before(async () => {
  nodes = await startNodes(2, { first: 97, cpus: 2, logLevel: 'warn' });
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

const spec = (n: TestNode) => ({ host: n.host, port: n.port });

async function jobsOf(base: string): Promise<Record<string, any>> {
  return Object.fromEntries((await request(`${base}/cluster_status`)).json().map((c: any) => [c.name, c.jobs]));
}

async function runJobs(cluster: JobCluster, n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, (_, i) => cluster.submit(new C(String(i), 1), 0.05).wait()));
}

test('both chaining patterns of the seed, addCluster and delCluster: every job counted once, names unique', async () => {
  let server: DispyHTTPServer | null = null;
  const userSaw: DispyStatus[] = [];
  // Pattern 1: the user's own callback, chaining to the server's.
  const first = new JobCluster(compute, {
    depends: [C],
    nodes: [spec(nodes[0]!)],
    secret: TEST_SECRET,
    clusterStatus: (status: DispyStatus, node: DispyNode | null, job: DispyJob | null) => {
      userSaw.push(status);
      server?.clusterStatus(status, node, job);
    },
  });
  ({ server } = await startServer(first));
  const base = server.address!.url;
  // Pattern 2: another cluster handing its events to the server's callback: it joins the view.
  const second = new JobCluster(compute, {
    depends: [C],
    nodes: [spec(nodes[1]!)],
    secret: TEST_SECRET,
    clusterStatus: server.clusterStatus,
  });
  // A third, added explicitly, whose callback also chains.
  const third = new JobCluster(compute, {
    depends: [C],
    nodes: [spec(nodes[0]!)],
    secret: TEST_SECRET,
    name: 'third',
    clusterStatus: (s, n, j) => server!.clusterStatus(s, n, j),
  });
  try {
    assert.equal(server.addCluster(third), 'third');
    assert.equal(server.addCluster(third), 'third', 'adding twice changes nothing');
    await until(
      () => first.status().nodes.length === 1 && second.status().nodes.length === 1 && third.status().nodes.length === 1,
      10_000,
      'nodes',
    );
    await Promise.all([runJobs(first, 5), runJobs(second, 3), runJobs(third, 2)]);
    await until(
      async () => Object.values(await jobsOf(base)).reduce((a: number, j: any) => a + j.done, 0) === 10,
      5_000,
      'all done in the view',
    );
    // Listed in the order they joined (the second joined with its first event).
    assert.deepEqual([...server.clusterNames].sort(), ['compute', 'compute (2)', 'third']);
    const jobs = await jobsOf(base);
    assert.deepEqual(jobs.compute, { submitted: 5, done: 5, queued: 0, running: 0, failed: 0 });
    assert.deepEqual(jobs['compute (2)'], { submitted: 3, done: 3, queued: 0, running: 0, failed: 0 });
    assert.deepEqual(jobs.third, { submitted: 2, done: 2, queued: 0, running: 0, failed: 0 });
    assert.ok(userSaw.length >= 5 * 3, 'the user callback still gets every event');
    const names = (await request(`${base}/nodes`)).json().map((c: any) => c.name);
    assert.deepEqual(names, server.clusterNames);

    // delCluster: gone, and its chained callback does not bring it back.
    assert.equal(server.delCluster(third), true);
    await runJobs(third, 2);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual([...server.clusterNames].sort(), ['compute', 'compute (2)']);
    // addCluster again: shown anew (counting from now), once.
    assert.equal(server.addCluster(third), 'third');
    await runJobs(third, 2);
    await until(async () => (await jobsOf(base)).third?.done === 2, 5_000, 'third counted again');
    assert.deepEqual((await jobsOf(base)).third, { submitted: 2, done: 2, queued: 0, running: 0, failed: 0 });
    // A server made with null joins clusters through the callback too.
    const { server: empty, base: emptyBase } = await startServer(null);
    try {
      assert.deepEqual((await request(`${emptyBase}/cluster_status`)).json(), []);
      const fourth = new JobCluster(compute, {
        depends: [C],
        nodes: [spec(nodes[1]!)],
        secret: TEST_SECRET,
        name: 'fourth',
        clusterStatus: empty.clusterStatus,
      });
      await runJobs(fourth, 3);
      await until(async () => (await jobsOf(emptyBase)).fourth?.done === 3, 5_000, 'fourth shown');
      assert.deepEqual((await jobsOf(emptyBase)).fourth, { submitted: 3, done: 3, queued: 0, running: 0, failed: 0 });
      assert.equal((await request(`${emptyBase}/cluster_status`)).json()[0].nodes.length, 1);
      await fourth.close();
    } finally {
      await empty.shutdown({ wait: false });
    }
  } finally {
    await server.shutdown({ wait: false });
    await Promise.all([first.close(), second.close(), third.close()]);
  }
});

test('two servers on two ports, each with its own cluster, side by side', async () => {
  const x = new JobCluster(compute, { depends: [C], nodes: [spec(nodes[0]!)], secret: TEST_SECRET, name: 'x' });
  const y = new JobCluster(compute, { depends: [C], nodes: [spec(nodes[1]!)], secret: TEST_SECRET, name: 'y' });
  const one = await startServer(x);
  const two = await startServer(y);
  try {
    assert.notEqual(one.server.address!.port, two.server.address!.port);
    await Promise.all([runJobs(x, 4), runJobs(y, 2)]);
    await until(async () => (await jobsOf(one.base)).x?.done === 4 && (await jobsOf(two.base)).y?.done === 2, 5_000, 'both views');
    const s1 = (await request(`${one.base}/cluster_status`)).json();
    const s2 = (await request(`${two.base}/cluster_status`)).json();
    assert.deepEqual(
      s1.map((c: any) => c.name),
      ['x'],
    );
    assert.deepEqual(
      s2.map((c: any) => c.name),
      ['y'],
    );
    assert.deepEqual(
      s1[0].nodes.map((n: any) => n.ip_addr),
      [nodes[0]!.host],
    );
    assert.deepEqual(
      s2[0].nodes.map((n: any) => n.ip_addr),
      [nodes[1]!.host],
    );
    // Cookies are per host, not per port: each server names its cursor cookie after its port.
    const c1 = String((await request(`${one.base}/cluster_updates`)).headers['set-cookie']);
    const c2 = String((await request(`${two.base}/cluster_updates`)).headers['set-cookie']);
    assert.match(c1, new RegExp(`^dispyts_cursor_${one.server.address!.port}=`));
    assert.match(c2, new RegExp(`^dispyts_cursor_${two.server.address!.port}=`));
    await one.server.shutdown({ wait: false });
    assert.equal((await request(`${two.base}/healthz`)).status, 200, 'the other server keeps serving');
  } finally {
    await Promise.all([one.server.shutdown({ wait: false }), two.server.shutdown({ wait: false })]);
    await Promise.all([x.close(), y.close()]);
  }
});

test('shutdown without waiting closes an open SSE stream at once', async () => {
  const cluster = new JobCluster(compute, { depends: [C], nodes: [spec(nodes[0]!)], secret: TEST_SECRET });
  const { server, base } = await startServer(cluster, { pollSec: 5 });
  try {
    const sse = new SseViewer(`${base}/events?interval=0.1`);
    await sse.until(() => sse.events.length > 0, 5_000, 'first event');
    const t0 = Date.now();
    await server.shutdown({ wait: false });
    assert.ok(Date.now() - t0 < 2_000, `shutdown took ${Date.now() - t0} ms`);
    await sse.done;
    assert.ok(
      sse.events.some((e) => e.event === 'shutdown'),
      'a shutdown event before the end',
    );
    await assert.rejects(request(`${base}/healthz`, { timeoutMs: 2_000 }));
    assert.throws(() => server.addCluster(cluster), { code: 'DISPY_ERR_CLUSTER_CLOSED' });
    await server.shutdown();
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close();
  }
});

test('shutdown() waits pollSec, keeps serving and streaming meanwhile, then closes every connection', async () => {
  const cluster = new JobCluster(compute, { depends: [C], nodes: [spec(nodes[0]!)], secret: TEST_SECRET });
  const { server, base } = await startServer(cluster, { pollSec: 1 });
  try {
    const sse = new SseViewer(`${base}/events?interval=0.1`);
    await until(() => cluster.status().nodes.length === 1, 10_000, 'node');
    await sse.until(() => sse.events.length > 0, 5_000, 'first event');
    const t0 = Date.now();
    const job = cluster.submit(new C('last', 2), 0.3);
    const done = server.shutdown();
    await job.wait();
    // Still answering during the wait, and the job's end reaches the stream.
    assert.equal((await request(`${base}/healthz`)).status, 200);
    await sse.until(() => sse.state.get('compute')?.jobs.done === 1, 5_000, 'the last job over SSE');
    await done;
    const took = Date.now() - t0;
    assert.ok(took >= 950, `waited ${took} ms`);
    await sse.done;
    assert.equal(sse.events[sse.events.length - 1]!.event, 'shutdown');
    await assert.rejects(request(`${base}/healthz`, { timeoutMs: 2_000 }));
  } finally {
    await server.shutdown({ wait: false });
    await cluster.close();
  }
});

test('options are validated; a port in use rejects `listening` with DISPY_ERR_LISTEN', async () => {
  const bad: Record<string, unknown>[] = [
    { pollSec: 0.5 },
    { pollSec: 0 },
    { pollSec: 'ten' },
    { port: -1 },
    { port: 1.5 },
    { host: 5 },
    { keyFile: '/x.pem' },
    { showJobArgs: 'yes' },
    { allowedHosts: 'a' },
    { auth: { token: 'short' } },
    { auth: 'none' },
    { maxBodyBytes: 10 },
  ];
  for (const o of bad) {
    assert.throws(
      () => new DispyHTTPServer(null, { host: '127.0.0.1', port: 0, ...o } as never),
      { code: 'DISPY_ERR_INVALID_OPTION' },
      JSON.stringify(o),
    );
  }
  assert.throws(() => new DispyHTTPServer({} as never, { host: '127.0.0.1', port: 0 }), { code: 'DISPY_ERR_INVALID_OPTION' });
  assert.throws(() => new DispyHTTPServer(null, { host: '127.0.0.1', port: 0, certFile: '/nonexistent/cert.pem' }), {
    code: 'DISPY_ERR_TLS',
  });
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  const s = new DispyHTTPServer(null, { host: '127.0.0.1', port, logLevel: 'silent' });
  await assert.rejects(s.listening, { code: 'DISPY_ERR_LISTEN' });
  await s.shutdown();
  blocker.close();
});
