/** Function jobs on real daemons: results, class instances, payload types, exceptions, output. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, DispyJob, DispyJobError, type DispyStatus } from '../src/index.js';
import { TEST_SECRET, startNode, startNodes, until, type TestNode, clusterOn } from './helpers/daemon.js';

class C {
  s: string;
  i: number;
  constructor(s: string, i: number) {
    this.s = s;
    this.i = i;
  }
  scaled(k: number): number {
    return this.i * k;
  }
  toString(): string {
    return `C(${this.s}, ${this.i.toFixed(4)})`;
  }
}

describe('function jobs over three daemons', () => {
  let nodes: TestNode[];
  before(async () => {
    nodes = await startNodes(3, { first: 11, cpus: 2 });
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  });
  const spec = () => nodes.map((n) => ({ host: n.host, port: n.port }));

  test('200 jobs spread over all nodes with correct results', async () => {
    const cluster = new JobCluster((x: number) => ({ x, sq: x * x, pid: process.pid }), { nodes: spec(), secret: TEST_SECRET });
    // Short jobs would all finish on whichever node is set up first.
    await until(() => cluster.status().nodes.length === 3, 10_000, 'three nodes');
    const jobs = Array.from({ length: 200 }, (_, i) => cluster.submit(i));
    const results = await Promise.all(jobs.map((j) => j.wait()));
    for (const [i, r] of results.entries()) assert.deepEqual({ x: r.x, sq: r.sq }, { x: i, sq: i * i });
    const used = new Set(jobs.map((j) => j.ipAddr));
    assert.deepEqual([...used].sort(), nodes.map((n) => n.host).sort(), 'every node ran jobs');
    for (const j of jobs) {
      assert.equal(j.status, DispyJob.Finished);
      assert.ok(j.startTime! >= j.submitTime - 5 && j.endTime! >= j.startTime!);
    }
    const st = cluster.status();
    assert.equal(st.jobsPending, 0);
    assert.equal(
      st.nodes.reduce((a, n) => a + n.jobsDone, 0),
      200,
    );
    for (const n of st.nodes) {
      assert.equal(n.cpus, 2);
      assert.equal(n.availCpus, 2);
      assert.ok(n.machineCpus >= 1);
      assert.ok(n.tx > 0 && n.rx > 0);
      assert.ok(n.availInfo && Object.values(n.availInfo).every(Number.isFinite));
    }
    assert.equal(await cluster.close(), true);
  });

  test('class instances travel with their methods, both ways', async () => {
    async function compute(obj: C, n = 5) {
      return { product: obj.scaled(n), back: new C(`${obj.s}!`, obj.i * 2), text: String(obj) };
    }
    const cluster = new JobCluster(compute, { depends: [C], nodes: spec(), secret: TEST_SECRET });
    const job = cluster.submit(new C('a', 1.5), 4);
    const r = await job.wait();
    assert.equal(r.product, 6);
    assert.equal(r.text, 'C(a, 1.5000)');
    assert.ok(r.back instanceof C, 'result instance rebuilt with its class');
    assert.equal(r.back.scaled(2), 6);
    assert.equal(String(job.args[0]), 'C(a, 1.5000)');
    await cluster.close();
  });

  test('Map, Set, Date, BigInt, typed arrays, Buffers and cycles round-trip', async () => {
    const cluster = new JobCluster((v: unknown) => v, { nodes: spec(), secret: TEST_SECRET });
    const cyc: { name: string; self?: unknown; list: unknown[] } = { name: 'cyc', list: [] };
    cyc.self = cyc;
    cyc.list.push(cyc);
    const value = {
      map: new Map<unknown, unknown>([
        ['a', 1],
        [2, new Set(['x'])],
      ]),
      set: new Set([1, 'two', 3n]),
      date: new Date('2026-11-26T00:00:00Z'),
      big: 2n ** 80n,
      small: -7n,
      f64: new Float64Array([1.5, -2.25]),
      u8: new Uint8Array([1, 2, 3]),
      buf: Buffer.from('hello'),
      cyc,
      nothing: undefined,
      nil: null,
    };
    const back = (await cluster.submit(value).wait()) as typeof value;
    assert.deepEqual(back.map, value.map);
    assert.deepEqual(back.set, value.set);
    assert.equal(back.date.getTime(), value.date.getTime());
    assert.equal(back.big, 2n ** 80n);
    assert.equal(back.small, -7n);
    assert.deepEqual([...back.f64], [1.5, -2.25]);
    assert.ok(back.f64 instanceof Float64Array);
    assert.deepEqual([...back.u8], [1, 2, 3]);
    assert.equal(Buffer.from(back.buf).toString(), 'hello');
    assert.equal(back.cyc.self, back.cyc);
    assert.equal(back.cyc.list[0], back.cyc);
    assert.ok('nothing' in back && back.nothing === undefined);
    assert.equal(back.nil, null);
    await cluster.close();
  });

  test('a throw ends the job Terminated with the remote stack', async () => {
    function inner(x: number): number {
      throw new RangeError(`bad value ${x}`);
    }
    function compute(x: number) {
      return inner(x);
    }
    const statuses: DispyStatus[] = [];
    const cluster = new JobCluster(compute, {
      depends: [inner],
      nodes: spec(),
      secret: TEST_SECRET,
      jobStatus: (j) => statuses.push(j.status),
    });
    const job = cluster.submit(42);
    await assert.rejects(job.wait(), (err: unknown) => {
      assert.ok(err instanceof DispyJobError);
      assert.equal(err.code, 'DISPY_ERR_JOB_TERMINATED');
      assert.equal(err.job, job);
      return true;
    });
    assert.equal(job.status, DispyJob.Terminated);
    assert.match(job.exception!, /^RangeError: bad value 42/);
    assert.match(job.exception!, /at inner/);
    assert.match(job.exception!, /at compute/);
    assert.equal(job.result, null);
    await cluster.close();
    assert.deepEqual(statuses, [DispyJob.Terminated]);
  });

  test('a free variable that was not shipped is named in the error', async () => {
    const secretFactor = 3;
    const cluster = new JobCluster((x: number) => x * secretFactor, { nodes: spec(), secret: TEST_SECRET });
    const job = cluster.submit(2);
    await assert.rejects(job.wait(), /secretFactor/);
    assert.match(job.exception!, /ReferenceError: secretFactor is not defined/);
    assert.match(job.exception!, /DISPY_ERR_FREE_VARIABLE.*`secretFactor`.*depends/);
    await cluster.close();
  });
});

describe('output capture', () => {
  let node: TestNode;
  before(async () => {
    node = await startNode({ host: '127.0.0.14', cpus: 1, env: { DISPYTS_OUTPUT_LIMIT: '1000' } });
  });
  after(async () => {
    await node.stop();
  });

  test('stdout and stderr are captured per job and truncated with a marker', async () => {
    const cluster = new JobCluster(async (n: number, big: boolean) => {
      console.log(`out ${n}`);
      console.error(`err ${n}`);
      process.stdout.write(`raw ${n}\n`);
      if (big) process.stdout.write('x'.repeat(5000));
      await new Promise((r) => setTimeout(r, 5));
      return n;
    }, clusterOn(node));
    const jobs = [cluster.submit(1, false), cluster.submit(2, false), cluster.submit(3, true)];
    await Promise.all(jobs.map((j) => j.wait()));
    assert.equal(jobs[0]!.stdout, 'out 1\nraw 1\n');
    assert.equal(jobs[0]!.stderr, 'err 1\n');
    assert.equal(jobs[1]!.stdout, 'out 2\nraw 2\n');
    assert.equal(jobs[1]!.stderr, 'err 2\n');
    const big = jobs[2]!.stdout;
    assert.ok(big.startsWith('out 3\nraw 3\nxxx'));
    assert.match(big, /\[dispyts: output truncated at 1000 bytes\]\n$/);
    assert.ok(Buffer.byteLength(big) < 1100);
    await cluster.close();
  });
});
