/**
 * Node specs that follow a name (`{ host, resolve: 'all' }`, as for a Kubernetes headless
 * Service): every address the name resolves to is a node, resolved again on discoverNodes() and
 * every pingInterval, so new addresses join and vanished ones are retired (their jobs re-run
 * elsewhere with reentrant). Real daemons on 127.0.0.121-124, all on one port as a Service's
 * pods are; the name is resolved by an injected lookup. The system resolver is trapped for the
 * whole file: asking it for any name but `localhost` fails the test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dns from 'node:dns/promises';
import net from 'node:net';
import pino from 'pino';
import { JobCluster, NodeAllocate, DispyJob, DispyNode, type ClusterStatusEvent, type NodeLookup } from '../src/index.js';
import { NodeResolver } from '../src/client/node-resolver.js';
import { TEST_SECRET, startNode, until, within, type TestNode } from './helpers/daemon.js';

const realLookup = dns.lookup;
const asked: string[] = [];
(dns as { lookup: unknown }).lookup = (name: string, ...rest: unknown[]) => {
  asked.push(name);
  if (name !== 'localhost') throw new Error(`the system resolver was asked for ${name}`);
  return (realLookup as (...a: unknown[]) => unknown)(name, ...rest);
};

const SERVICE = 'dispyts-nodes.dispyts.svc.cluster.local';
const silent = pino({ level: 'silent' });

function enoent(code: string): Error {
  return Object.assign(new Error(`getaddrinfo ${code} ${SERVICE}`), { code });
}

/** A resolver whose answers the test sets per name: addresses, or an error code to throw. */
function fakeLookup(): { lookup: NodeLookup; set(a: string[] | string, name?: string): void; calls: string[] } {
  const answers = new Map<string, string[] | string>();
  const calls: string[] = [];
  return {
    calls,
    set(a, name = SERVICE) {
      answers.set(name, a);
    },
    lookup: async (name) => {
      calls.push(name);
      const answer = answers.get(name) ?? 'ENOTFOUND';
      if (typeof answer === 'string') throw enoent(answer);
      return answer.map((address) => ({ address, family: 4 }));
    },
  };
}

test('NodeResolver: the answer defines the nodes; no such name is none; a failed lookup changes nothing and is reported once', async () => {
  const fake = fakeLookup();
  const spec = new NodeAllocate(SERVICE, 9701, 0, { resolve: 'all' });
  const first = new NodeAllocate('other.example', 9701);
  const seen: string[][] = [];
  const errors: string[] = [];
  const r = new NodeResolver({
    lookup: fake.lookup,
    log: silent,
    specs: () => [first, spec],
    onResolved: (s, a) => {
      assert.equal(s, spec);
      seen.push([...a]);
    },
    onError: (e) => errors.push(e.message),
  });
  fake.set(['127.0.0.5', '127.0.0.6', '127.0.0.5']);
  await r.refresh();
  assert.deepEqual(seen.at(-1), ['127.0.0.5', '127.0.0.6'], 'duplicates once, in the answer order');
  assert.ok(spec.matches('127.0.0.6') && spec.allocate(null, '127.0.0.6', 'n', 4) === 4, 'the spec allocates its addresses');
  assert.deepEqual(fake.calls, [SERVICE], "only the following spec's name is resolved by refresh()");
  fake.set('EAI_AGAIN');
  await r.refresh();
  await r.refresh();
  assert.equal(seen.length, 1, 'a lookup that failed reports no change');
  assert.ok(r.has(spec, '127.0.0.5'), 'and keeps the addresses');
  assert.equal(errors.length, 1, 'the failure is reported once');
  assert.match(errors[0]!, /cannot resolve node dispyts-nodes.*EAI_AGAIN/);
  fake.set('ENOTFOUND');
  await r.refresh();
  assert.deepEqual(seen.at(-1), [], 'a name that does not exist has no node');
  assert.equal(spec.matches('127.0.0.5'), false);
  fake.set(['127.0.0.7']);
  await r.refresh();
  assert.deepEqual(seen.at(-1), ['127.0.0.7']);
  r.close();
  await r.refresh();
  assert.equal(seen.length, 3, 'nothing is resolved once closed');
});

test('NodeResolver: pingInterval resolves again by itself', async () => {
  const fake = fakeLookup();
  fake.set(['127.0.0.5']);
  const r = new NodeResolver({
    lookup: fake.lookup,
    pingInterval: 1,
    log: silent,
    specs: () => [new NodeAllocate(SERVICE, 9701, 0, { resolve: 'all' })],
    onResolved: () => undefined,
    onError: () => undefined,
  });
  try {
    await r.refresh();
    await until(() => fake.calls.length >= 3, 5000, 'two lookups on the timer');
  } finally {
    r.close();
  }
});

test('bad specs and lookups are DISPY_ERR_INVALID_OPTION naming what is wrong', () => {
  const invalid = (f: () => unknown, rex: RegExp) =>
    assert.throws(f, (e: Error & { code?: string }) => e.code === 'DISPY_ERR_INVALID_OPTION' && rex.test(e.message));
  invalid(() => new NodeAllocate(SERVICE, 9701, 0, { resolve: 'sometimes' as never }), /resolve.*'first' or 'all'/);
  invalid(() => new NodeAllocate('10.0.0.*', 9701, 0, { resolve: 'all' }), /wildcard is discovered/);
  invalid(
    () => new JobCluster((x: number) => x, { nodes: [{ host: SERVICE, resolve: 'all' }], lookup: 'dns' as never, secret: TEST_SECRET }),
    /lookup/,
  );
});

/** A port free on every address below (a Service's pods all listen on one port). */
async function sharedPort(hosts: string[]): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, hosts[0], () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const free = await Promise.all(
      hosts.map(
        (h) =>
          new Promise<boolean>((resolve) => {
            const s = net.createServer();
            s.once('error', () => resolve(false));
            s.listen(port, h, () => s.close(() => resolve(true)));
          }),
      ),
    );
    if (free.every(Boolean)) return port;
  }
  throw new Error('no port free on every address');
}

test('a node spec following a name: scaling up adds nodes, a vanished address is retired and its job runs again elsewhere', async () => {
  const hosts = ['127.0.0.121', '127.0.0.122', '127.0.0.123', '127.0.0.124'];
  const port = await sharedPort(hosts);
  const nodes: TestNode[] = await Promise.all(hosts.map((host) => startNode({ host, cpus: 1, args: ['--port', String(port)] })));
  const [a, b, c, d] = hosts as [string, string, string, string];
  const fake = fakeLookup();
  fake.set([a, b]);
  const events: ClusterStatusEvent[] = [];
  const errors: string[] = [];
  const cluster = new JobCluster(
    async (n: number, gate: string) => {
      const fs = require('node:fs') as typeof import('node:fs');
      const until = Date.now() + 20_000;
      while (gate && !fs.existsSync(gate) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      return { n, ip: (globalThis as Record<string, unknown>).dispyNodeIpAddr as string };
    },
    {
      nodes: [{ host: SERVICE, port, resolve: 'all' }],
      lookup: fake.lookup,
      secret: TEST_SECRET,
      pingInterval: 1,
      reentrant: true,
    },
  );
  cluster.on('status', (e: ClusterStatusEvent) => events.push(e));
  cluster.on('error', (e: Error) => errors.push(e.message));
  const initialized = (ip: string) => events.filter((e) => e.status === DispyNode.Initialized && e.node?.ipAddr === ip).length;
  const closed = (ip: string) => events.filter((e) => e.status === DispyNode.Closed && e.node?.ipAddr === ip).length;
  const gate = `/tmp/dispyts-service-nodes-gate-${process.pid}`;
  try {
    await until(() => initialized(a) && initialized(b), 15_000, 'both addresses of the name initialized');
    const quick = Array.from({ length: 20 }, (_, i) => cluster.submit(i, ''));
    const done = await within(Promise.all(quick.map((j) => j.wait())), 20_000, 'quick jobs');
    assert.deepEqual(
      done.map((r) => r.n),
      quick.map((_, i) => i),
    );
    assert.deepEqual(new Set(done.map((r) => r.ip)), new Set([a, b]));

    // Scaled up: discoverNodes() resolves the name again at once.
    fake.set([a, b, c]);
    assert.equal(await cluster.discoverNodes(), 0);
    await until(() => initialized(c), 15_000, 'the new address initialized');

    // One gated job per node, then b leaves the name: it is retired at the next pingInterval.
    const gated = [0, 1, 2].map((i) => cluster.submit(100 + i, gate));
    await until(() => cluster.status().nodes.every((n) => n.busy === 1), 10_000, 'a gated job running on every node');
    const onB = gated.find((j) => j.ipAddr === b)!;
    assert.ok(onB, 'a job runs on b');
    fake.set([a, c]);
    await until(() => closed(b), 10_000, 'b retired (Closed)');
    assert.equal(onB.status, DispyJob.Created, "b's job is queued again (reentrant)");
    // b was told to close the computation: its job there is terminated, nothing runs on for nobody.
    await until(() => nodes[1]!.log().includes('computation closed'), 10_000, "b's daemon closing the computation");
    (await import('node:fs')).writeFileSync(gate, '');
    const results = await within(Promise.all(gated.map((j) => j.wait())), 30_000, 'gated jobs');
    assert.deepEqual(
      results.map((r) => r.n),
      [100, 101, 102],
    );
    assert.notEqual(onB.ipAddr, b, "b's job finished on another node");
    assert.ok(results.every((r) => r.ip !== b));
    assert.deepEqual(new Set(cluster.status().nodes.map((n) => n.ipAddr)), new Set([a, c]));

    // A lookup that fails leaves the nodes; a name that is gone retires them all.
    fake.set('EAI_AGAIN');
    const calls = fake.calls.length;
    await until(() => fake.calls.length >= calls + 2, 5000, 'two failed lookups');
    assert.equal(cluster.status().nodes.length, 2);
    assert.equal(errors.filter((m) => /EAI_AGAIN/.test(m)).length, 1, 'the failure is reported once');
    fake.set('ENOTFOUND');
    await until(() => closed(a) && closed(c), 10_000, 'every node retired');
    assert.equal(cluster.status().nodes.length, 0);

    // Back with one pod; allocateNode follows a second name as well.
    fake.set([a]);
    await cluster.discoverNodes();
    await until(() => initialized(a) === 2, 15_000, 'a initialized again');
    const other = 'more-nodes.dispyts.svc.cluster.local';
    fake.set([d], other);
    assert.equal(await cluster.allocateNode({ host: other, port, resolve: 'all' }), 0);
    assert.ok(cluster.status().nodes.some((n) => n.ipAddr === d));
    const last = await within(
      Promise.all([cluster.submitNode(a, 1, ''), cluster.submitNode(d, 2, '')].map((j) => j.wait())),
      20_000,
      'jobs on a and d',
    );
    assert.deepEqual(
      last.map((r) => r.ip),
      [a, d],
    );
    assert.deepEqual(new Set(fake.calls), new Set([SERVICE, other]), 'the injected lookup, given the names');
    assert.deepEqual(asked, [], 'the system resolver was never asked');
  } finally {
    (await import('node:fs')).rmSync(gate, { force: true });
    await cluster.close({ terminate: true });
    await Promise.all(nodes.map((n) => n.stop()));
  }
});

test('a node given by host name is used (the name resolved once, by the system resolver for localhost)', async () => {
  const [first] = await realLookup('localhost', { all: true });
  assert.ok(first, 'localhost resolves');
  const node = await startNode({ host: first.address, cpus: 1 });
  const cluster = new JobCluster((x: number) => x * 2, { nodes: [{ host: 'localhost', port: node.port }], secret: TEST_SECRET });
  try {
    assert.equal(await within(cluster.submit(21).wait(), 20_000, 'a job on localhost'), 42);
    assert.deepEqual(
      cluster.status().nodes.map((n) => n.ipAddr),
      [first.address],
    );
    assert.deepEqual(new Set(asked), new Set(['localhost']), 'the system resolver was asked for localhost only');
  } finally {
    await cluster.close({ terminate: true });
    await node.stop();
  }
});
