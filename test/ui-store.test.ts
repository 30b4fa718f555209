/** The pages' data layer without a browser: snapshots and deltas, `* Combined`, sorting, formats. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareIp, formatBytes, formatPercent } from '../src/ui/lib/format.js';
import { perInterval, Series } from '../src/ui/lib/history.js';
import { sortNodes } from '../src/ui/lib/sort.js';
import { ClusterStore, COMBINED, asUpdates, nodeState, totals } from '../src/ui/lib/store.js';
import type { NodeJson, UpdatesJson } from '../src/ui/lib/types.js';

function node(ip: string, over: Partial<NodeJson> = {}): NodeJson {
  return {
    ip_addr: ip,
    name: `n-${ip}`,
    cpus: 2,
    avail_cpus: 2,
    busy: 0,
    jobs_done: 0,
    cpu_time: 0,
    tx: 0,
    rx: 0,
    update_time: 1_795_000_000,
    avail_info: { cpu: 50, memory: 1024, disk: 2048, swap: 100 },
    port: 9701,
    machine_cpus: 4,
    cpu_used: 0,
    status: 4,
    platform: 'linux',
    ...over,
  };
}

const snap = (clusters: UpdatesJson['clusters'], cursor = 10, epoch = 'e1'): UpdatesJson => ({
  epoch,
  cursor,
  resync: true,
  clusters,
  removed_clusters: [],
});
const delta = (clusters: UpdatesJson['clusters'], removed: string[] = [], cursor = 20): UpdatesJson => ({
  epoch: 'e1',
  cursor,
  resync: false,
  clusters,
  removed_clusters: removed,
});

test('addresses sort numerically (IPv4 by value, IPv6 by group); sorting works both ways on every key', () => {
  assert.ok(compareIp('127.0.0.9', '127.0.0.10') < 0);
  assert.ok(compareIp('10.0.0.2', '9.255.255.255') > 0);
  assert.ok(compareIp('::2', '::10') < 0);
  const s = new ClusterStore();
  s.apply(
    snap([
      {
        name: 'c',
        jobs: { submitted: 0, done: 0 },
        nodes: [node('127.0.0.9', { jobs_done: 5 }), node('127.0.0.10', { jobs_done: 1 }), node('127.0.0.100', { jobs_done: 3 })],
      },
    ]),
    true,
  );
  const v = s.view('c')!;
  assert.deepEqual(
    sortNodes(v.nodes.values(), { key: 'ip', dir: 'desc' }).map((r) => r.ip),
    ['127.0.0.100', '127.0.0.10', '127.0.0.9'],
  );
  assert.deepEqual(
    sortNodes(v.nodes.values(), { key: 'ip', dir: 'asc' }).map((r) => r.ip),
    ['127.0.0.9', '127.0.0.10', '127.0.0.100'],
  );
  assert.deepEqual(
    sortNodes(v.nodes.values(), { key: 'jobsDone', dir: 'desc' }).map((r) => r.jobsDone),
    [5, 3, 1],
  );
  assert.deepEqual(
    sortNodes(v.nodes.values(), { key: 'jobsDone', dir: 'asc' }).map((r) => r.jobsDone),
    [1, 3, 5],
  );
});

test('a delta replaces only the changed records; removals of nodes and clusters apply; an unchanged node keeps its object', () => {
  const s = new ClusterStore();
  s.apply(snap([{ name: 'c', jobs: { submitted: 2, done: 1 }, nodes: [node('127.0.0.2'), node('127.0.0.3')] }]), true);
  const before = s.view('c')!.nodes.get('127.0.0.3');
  const r = s.apply(
    delta([
      {
        name: 'c',
        jobs: { submitted: 3, done: 2, queued: 4, running: 1, failed: 1 },
        nodes: [node('127.0.0.2', { busy: 2 }), node('127.0.0.3')],
        removed_nodes: [],
      },
    ]),
    false,
  );
  assert.deepEqual([...r.changed], ['127.0.0.2']);
  assert.equal(s.view('c')!.nodes.get('127.0.0.3'), before, 'same object for an unchanged node');
  assert.equal(s.view('c')!.nodes.get('127.0.0.2')!.state, 'full');
  assert.deepEqual(s.view('c')!.jobs, { submitted: 3, done: 2, queued: 4, running: 1, failed: 1 });
  s.apply(delta([{ name: 'c', jobs: { submitted: 3, done: 2 }, nodes: [], removed_nodes: ['127.0.0.3'] }], [], 21), false);
  assert.deepEqual([...s.view('c')!.nodes.keys()], ['127.0.0.2']);
  s.apply(delta([], ['c'], 22), false);
  assert.equal(s.clusters.size, 0);
});

test('* Combined: the union of addresses, counters and busy summed, CPUs capped by what the node offers', () => {
  const s = new ClusterStore();
  s.apply(
    snap([
      {
        name: 'a',
        jobs: { submitted: 5, done: 4, queued: 1, running: 1, failed: 0 },
        nodes: [node('127.0.0.2', { busy: 1, cpus: 2, jobs_done: 3, cpu_time: 1.5 }), node('127.0.0.3', { jobs_done: 1 })],
      },
      {
        name: 'b',
        jobs: { submitted: 2, done: 1, queued: 0, running: 1, failed: 1 },
        nodes: [node('127.0.0.2', { busy: 1, cpus: 1, jobs_done: 2, cpu_time: 2 })],
      },
    ]),
    true,
  );
  assert.deepEqual(s.viewKeys(), [COMBINED, 'a', 'b']);
  const c = s.view(COMBINED)!;
  assert.deepEqual(c.jobs, { submitted: 7, done: 5, queued: 1, running: 2, failed: 1 });
  const n = c.nodes.get('127.0.0.2')!;
  assert.equal(n.busy, 2);
  assert.equal(n.cpus, 2, 'min(offered 2, 2 + 1)');
  assert.equal(n.jobsDone, 5);
  assert.equal(n.jobTime, 3.5);
  assert.equal(n.state, 'full');
  assert.equal(totals(c).nodes, 2);
  // A delta for one cluster updates the combined record of that address only.
  s.apply(
    delta([
      {
        name: 'b',
        jobs: { submitted: 2, done: 2 },
        nodes: [node('127.0.0.2', { busy: 0, cpus: 1, jobs_done: 3, cpu_time: 2.5 })],
        removed_nodes: [],
      },
    ]),
    false,
  );
  assert.equal(s.view(COMBINED)!.nodes.get('127.0.0.2')!.jobsDone, 6);
  assert.equal(s.view(COMBINED)!.nodes.get('127.0.0.2')!.state, 'busy');
  // Down to one cluster: no combined view.
  s.apply(delta([], ['b'], 30), false);
  assert.deepEqual(s.viewKeys(), ['a']);
});

test('node state in words; formats; throughput per interval; dispy-shaped arrays are accepted as snapshots', () => {
  assert.equal(nodeState(16, 0, 2), 'closed');
  assert.equal(nodeState('unreachable', 1, 2), 'unreachable');
  assert.equal(nodeState(4, 0, 2), 'idle');
  assert.equal(nodeState(4, 1, 2), 'busy');
  assert.equal(nodeState(4, 2, 2), 'full');
  assert.equal(formatBytes(24885354496), '23.18 GB');
  assert.equal(formatBytes(965), '965 B');
  assert.equal(formatPercent(60.5), '60.50 %');
  assert.equal(formatBytes(null), '-');
  const s = new Series();
  for (const [t, v] of [
    [1000, 3],
    [2000, 5],
    [3000, 5],
    [4000, 9],
  ] as const)
    s.push(t, v);
  assert.deepEqual(perInterval(s), { t: [2000, 3000, 4000], v: [2, 0, 4] });
  const u = asUpdates([{ name: 'compute', jobs: { submitted: 4, done: 2 }, nodes: [node('127.0.0.1')] }]);
  assert.equal(u?.resync, true);
  assert.equal(asUpdates({ nope: 1 }), null);
});

test('history: a node is sampled from its first change, seeded with the value it held before', () => {
  const s = new ClusterStore();
  s.apply(
    snap([{ name: 'c', jobs: { submitted: 0, done: 0 }, nodes: [node('127.0.0.2', { busy: 0, update_time: 1_795_000_000 })] }]),
    true,
    1_795_000_010_000,
  );
  assert.equal(s.history.get('c', '127.0.0.2'), undefined, 'a snapshot samples nothing');
  s.apply(
    delta([
      {
        name: 'c',
        jobs: { submitted: 1, done: 0 },
        nodes: [node('127.0.0.2', { busy: 1, update_time: 1_795_000_020 })],
        removed_nodes: [],
      },
    ]),
    false,
    1_795_000_020_000,
  );
  const h = s.history.get('c', '127.0.0.2')!;
  assert.deepEqual(h.t, [1_795_000_010_000, 1_795_000_020_000]);
  assert.deepEqual(h.busy, [0, 1]);
});
