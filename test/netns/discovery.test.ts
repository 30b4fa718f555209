/**
 * UDP discovery on real network namespaces (issue 6, item 2): wildcards find nodes by broadcast
 * (or multicast) on the interface of the client's `host`; nodes announce themselves when they
 * start and when they become free; `pingInterval` and `discoverNodes()` find nodes later; matching
 * is anchored; forged, stale, replayed and oversized datagrams are dropped and logged while
 * discovery keeps working.
 *
 * Hosts (namespaces of their own, 10.77.0.0/24 exists only there; fixed ports are fine, every
 * namespace has its own):
 *   h1–h3  broadcast nodes at port 9701 (h1 also has 10.77.0.12, for the anchoring test)
 *   h4     the clients          h5  nodes started during a test
 *   h6     a node whose link goes down and up    h7  a multicast node    h8  the hostile peer
 * Skipped, with the reason printed, where the kernel refuses `ip netns add`.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { transform } from 'esbuild';
import type { Readable } from 'node:stream';
import { ROOT, TEST_SECRET } from '../helpers/daemon.js';
import { NetnsHarness, SUBNET, listNamespaces, netnsUnavailable, pidAlive, sweepStale, type NetnsHost, type NetnsNode } from './harness.js';

const skipReason = netnsUnavailable();
if (!skipReason) {
  const stale = sweepStale();
  if (stale.length) console.log(`removed stale test namespaces: ${stale.join(', ')}`);
}
if (skipReason) process.stdout.write(`# discovery suite skipped: ${skipReason}\n`);

const harness = skipReason ? undefined : new NetnsHarness();
let hosts: NetnsHost[] = [];
let nodes: NetnsNode[] = [];
let multicastNode: NetnsNode;
const BROADCAST = `${SUBNET}.255`;
/** A second address of h1, so `10.77.*.1` has a longer look-alike to refuse. */
const LOOKALIKE = `${SUBNET}.12`;
const everyNode: NetnsNode[] = [];
/** The fixtures, transpiled to plain JavaScript using dist/ (no TypeScript loader to start). */
let fixtureDir: string | undefined;
const fixture = (name: string): string => join(fixtureDir!, `${name}.mjs`);
const DIST = join(ROOT, 'dist');

async function compileFixtures(): Promise<void> {
  fixtureDir = mkdtempSync(join(tmpdir(), 'dispyts-netns-fixtures-'));
  for (const name of ['discovery-client', 'udp-tool']) {
    const src = readFileSync(join(ROOT, 'test', 'netns', 'fixtures', `${name}.ts`), 'utf8');
    const { code } = await transform(src, { loader: 'ts', format: 'esm', target: 'node20' });
    writeFileSync(fixture(name), code);
  }
}

type Event = Record<string, unknown> & { event?: string; phase?: number; nodes?: { ip: string; name: string }[] };
interface Final {
  results: { x: number; value: number; ip: string }[];
  nodes: { ip: string; name: string }[];
}

/** Resolves once `text()` matches `rex`, checked whenever `stream` has data; bounded. */
function waitOutput(stream: Readable, text: () => string, rex: RegExp, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      if (!rex.test(text())) return false;
      clearTimeout(timer);
      stream.off('data', check);
      resolve();
      return true;
    };
    const timer = setTimeout(() => {
      stream.off('data', check);
      reject(new Error(`${what}: no ${rex} in ${ms} ms:\n${text().slice(-4000)}`));
    }, ms);
    stream.on('data', check);
    // Listeners run in order: the harness's own collector has appended the chunk already.
    setImmediate(check);
  });
}

const nodeLog = (n: NetnsNode, rex: RegExp, ms = 10_000): Promise<void> =>
  waitOutput(n.proc.stderr!, () => n.log(), rex, ms, `log of ${n.name}`);

/** A fixture program running in a namespace, its JSON lines collected as they come. */
class Client {
  readonly proc: ChildProcess;
  readonly events: Event[] = [];
  #stderr = '';
  #stdout = '';
  readonly exited: Promise<number | null>;

  constructor(cfg: Record<string, unknown>, host: NetnsHost = hosts[3]!, name = 'discovery-client') {
    const full =
      name === 'discovery-client' ? { secret: TEST_SECRET, host: host.ip, jobs: 24, dist: DIST, ...cfg } : { dist: DIST, ...cfg };
    this.proc = harness!.spawnIn(host, [process.execPath, fixture(name), JSON.stringify(full)]);
    this.proc.stderr!.setEncoding('utf8').on('data', (d: string) => (this.#stderr += d));
    this.proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.#stdout += d;
      for (let nl = this.#stdout.indexOf('\n'); nl >= 0; nl = this.#stdout.indexOf('\n')) {
        const line = this.#stdout.slice(0, nl);
        this.#stdout = this.#stdout.slice(nl + 1);
        try {
          this.events.push(JSON.parse(line) as Event);
        } catch {
          // not JSON
        }
        this.proc.stdout!.emit('line');
      }
    });
    this.exited = new Promise((r) => this.proc.once('close', (code) => r(code)));
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** The first event matching `pred` (already printed or to come); fails on a fatal or an exit. */
  waitEvent(pred: (e: Event) => boolean, what: string, ms = 30_000): Promise<Event> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const fatal = this.events.find((e) => 'fatal' in e);
        if (fatal) {
          done(new Error(`client failed: ${String(fatal.fatal)}\n${this.#stderr.slice(-4000)}`));
          return;
        }
        const e = this.events.find(pred);
        if (e) done(null, e);
      };
      const onExit = (): void => {
        check();
        done(new Error(`client exited before ${what}:\n${this.#stderr.slice(-4000)}`));
      };
      const timer = setTimeout(() => done(new Error(`no ${what} in ${ms} ms:\n${this.#stderr.slice(-4000)}`)), ms);
      let settled = false;
      const done = (err: Error | null, e?: Event): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.proc.stdout!.off('line', check);
        this.proc.off('close', onExit);
        if (err) reject(err);
        else resolve(e!);
      };
      this.proc.stdout!.on('line', check);
      this.proc.once('close', onExit);
      check();
    });
  }

  phase(n: number): Promise<Event> {
    return this.waitEvent((e) => e.event === 'nodes' && e.phase === n, `phase ${n}`);
  }

  async final(): Promise<Final> {
    const e = await this.waitEvent((ev) => 'results' in ev, 'results');
    assert.equal(await this.exited, 0, this.#stderr.slice(-4000));
    return e as unknown as Final;
  }

  log(rex: RegExp, ms = 10_000): Promise<void> {
    return waitOutput(this.proc.stderr!, () => this.#stderr, rex, ms, 'client log');
  }

  signal(): void {
    this.proc.kill('SIGUSR2');
  }
}

const ips = (list: { ip: string }[] | undefined): string[] => [...new Set((list ?? []).map((n) => n.ip))].sort();

function assertRanOn(r: Final, expected: string[], jobs = 24): void {
  assert.equal(r.results.length, jobs);
  for (const [i, res] of r.results.entries()) assert.deepEqual({ x: res.x, value: res.value }, { x: i, value: i * i });
  assert.deepEqual(ips(r.results), [...expected].sort(), 'every discovered node ran jobs, and no other');
  assert.deepEqual(ips(r.nodes), [...expected].sort());
}

async function startNode(host: NetnsHost, args: string[] = [], name?: string): Promise<NetnsNode> {
  const n = await harness!.startNode(host, { port: 9701, cpus: 1, args, ...(name ? { name } : {}) });
  everyNode.push(n);
  return n;
}

function bridgeLink(host: NetnsHost, state: 'up' | 'down'): void {
  execFileSync('ip', ['-n', harness!.bridgeNs, 'link', 'set', `v${host.index}`, state], { stdio: 'ignore', timeout: 10_000 });
}

describe('UDP discovery on network namespaces', { skip: skipReason ?? false }, () => {
  before(async () => {
    await compileFixtures();
    hosts = harness!.create(8);
    execFileSync('ip', ['-n', hosts[0]!.ns, 'addr', 'add', `${LOOKALIKE}/24`, 'dev', 'eth0'], { stdio: 'ignore', timeout: 10_000 });
    const started = await Promise.all([
      startNode(hosts[0]!),
      startNode(hosts[1]!),
      startNode(hosts[2]!),
      startNode(hosts[6]!, ['--discovery', 'multicast']),
    ]);
    nodes = started.slice(0, 3);
    multicastNode = started[3]!;
    await Promise.all(started.map((n) => nodeLog(n, /UDP discovery started/)));
  });

  after(async () => {
    await harness!.cleanup();
    if (fixtureDir) rmSync(fixtureDir, { recursive: true, force: true });
  });

  const nodeIps = (): string[] => nodes.map((n) => n.ip);

  test("nodes: ['10.77.0.*'] with host = the client's address finds the 3 nodes and runs jobs on all", async () => {
    const c = new Client({ nodes: [`${SUBNET}.*`], phases: [3] });
    const p = await c.phase(0);
    assert.deepEqual(ips(p.nodes), nodeIps(), 'the broadcast nodes, not the multicast one');
    assertRanOn(await c.final(), nodeIps());
    assert.match(c.stderr, /discovery started/);
  });

  test("nodes: ['*'] finds them too", async () => {
    const c = new Client({ nodes: ['*'], phases: [3] });
    assertRanOn(await c.final(), nodeIps());
  });

  test('matching is anchored: 10.77.*.1 takes 10.77.0.1 and refuses 10.77.0.12 that answered too', async () => {
    const lookalike = await startNode({ ...hosts[0]!, ip: LOOKALIKE, index: 12 }, [], 'lookalike');
    try {
      const c = new Client({
        nodes: [`${SUBNET.split('.').slice(0, 2).join('.')}.*.1`],
        phases: [1, 1],
        between: 'hold',
        logLevel: 'debug',
      });
      const p = await c.phase(0);
      assert.deepEqual(ips(p.nodes), [hosts[0]!.ip]);
      // The look-alike answered, and was turned down for not matching.
      await c.log(new RegExp(`"node":"${LOOKALIKE.replace(/\./g, '\\.')}:9701"[^\\n]*announced node matches no spec`));
      c.signal();
      assertRanOn(await c.final(), [hosts[0]!.ip]);
    } finally {
      await lookalike.stop();
    }
  });

  test('a node started after the client is found by its start announcement', async () => {
    const c = new Client({ nodes: [`${SUBNET}.*`], phases: [3, 4], logLevel: 'debug' });
    const p = await c.phase(0);
    assert.deepEqual(ips(p.nodes), nodeIps());
    const late = await startNode(hosts[4]!);
    try {
      const p1 = await c.phase(1);
      assert.deepEqual(ips(p1.nodes), [...nodeIps(), late.ip].sort());
      await c.log(new RegExp(`"node":"${late.ip.replace(/\./g, '\\.')}:9701"[^\\n]*"reason":"start"[^\\n]*node announced`));
      assertRanOn(await c.final(), [...nodeIps(), late.ip]);
    } finally {
      await late.stop();
    }
  });

  let linkNode: NetnsNode | undefined;
  test('discoverNodes() at run time finds a node the first discovery could not reach', async () => {
    const h6 = hosts[5]!;
    // Started while no client listens, then cut off: the client's first request cannot reach it.
    linkNode = await startNode(h6);
    bridgeLink(h6, 'down');
    const c = new Client({ nodes: [`${SUBNET}.*`], phases: [3, 4], between: 'signal' });
    const p = await c.phase(0);
    assert.deepEqual(ips(p.nodes), nodeIps());
    bridgeLink(h6, 'up');
    c.signal();
    assert.equal((await c.waitEvent((e) => e.event === 'discover', 'discoverNodes()')).result, 0);
    const p1 = await c.phase(1);
    assert.deepEqual(ips(p1.nodes), [...nodeIps(), h6.ip].sort());
    assertRanOn(await c.final(), [...nodeIps(), h6.ip]);
  });

  test('pingInterval re-discovers: the node is found once its link is back', async () => {
    const h6 = hosts[5]!;
    assert.ok(linkNode, 'the node of the previous test');
    try {
      bridgeLink(h6, 'down');
      const c = new Client({ nodes: [`${SUBNET}.*`], phases: [3, 4], pingInterval: 1 });
      const p = await c.phase(0);
      assert.deepEqual(ips(p.nodes), nodeIps());
      bridgeLink(h6, 'up');
      const p1 = await c.phase(1);
      assert.deepEqual(ips(p1.nodes), [...nodeIps(), h6.ip].sort());
      assertRanOn(await c.final(), [...nodeIps(), h6.ip]);
    } finally {
      bridgeLink(h6, 'up');
      await linkNode!.stop();
    }
  });

  test('a node whose link is down when it starts begins discovery, and announces itself, once the link is up', async () => {
    const h5 = hosts[4]!;
    bridgeLink(h5, 'down');
    let late: NetnsNode | undefined;
    try {
      late = await startNode(h5);
      await nodeLog(late, /UDP discovery waits for the interface/);
      const c = new Client({ nodes: [`${SUBNET}.*`], phases: [3, 4], logLevel: 'debug' });
      const p = await c.phase(0);
      assert.deepEqual(ips(p.nodes), nodeIps());
      bridgeLink(h5, 'up');
      const p1 = await c.phase(1);
      assert.deepEqual(ips(p1.nodes), [...nodeIps(), h5.ip].sort());
      await c.log(new RegExp(`"node":"${h5.ip.replace(/\./g, '\\.')}:9701"[^\\n]*"reason":"start"[^\\n]*node announced`));
      assertRanOn(await c.final(), [...nodeIps(), h5.ip]);
    } finally {
      bridgeLink(h5, 'up');
      await late?.stop();
    }
  });

  test("allocateNode('10.77.0.*') discovers at run time", async () => {
    const c = new Client({ nodes: [nodes[0]!.ip], phases: [1, 3], between: `allocate:${SUBNET}.*` });
    const p = await c.phase(0);
    assert.deepEqual(ips(p.nodes), [nodes[0]!.ip]);
    assert.equal((await c.waitEvent((e) => e.event === 'allocate', 'allocateNode')).result, 0);
    assertRanOn(await c.final(), nodeIps());
  });

  test("discovery: 'multicast' finds multicast nodes only, and hears their start announcements", async () => {
    const c = new Client({ nodes: [`${SUBNET}.*`], phases: [1, 2], discovery: 'multicast', logLevel: 'debug' });
    const p = await c.phase(0);
    assert.deepEqual(ips(p.nodes), [multicastNode.ip], 'broadcast nodes do not hear multicast');
    const late = await startNode(hosts[4]!, ['--discovery', 'multicast'], 'late-multicast');
    try {
      const p1 = await c.phase(1);
      assert.deepEqual(ips(p1.nodes), [late.ip, multicastNode.ip].sort());
      await c.log(new RegExp(`"node":"${late.ip.replace(/\./g, '\\.')}:9701"[^\\n]*"reason":"start"[^\\n]*node announced`));
      assertRanOn(await c.final(), [late.ip, multicastNode.ip]);
    } finally {
      await late.stop();
    }
    assert.match(multicastNode.log(), /"mode":"multicast"/);
  });

  test('forged, stale, replayed and oversized datagrams are dropped and logged (rate-limited); discovery keeps working', async () => {
    const c = new Client({ nodes: [`${SUBNET}.*`], phases: [3, 4] });
    const p = await c.phase(0);
    assert.deepEqual(ips(p.nodes), nodeIps());
    const tool = new Client(
      {
        bind: hosts[7]!.ip,
        broadcast: BROADCAST,
        secret: TEST_SECRET,
        nodePort: 9701,
        discoveryPort: 9700,
        fakeNode: hosts[7]!.ip,
        count: 20,
        nodes: 3,
      },
      hosts[7]!,
      'udp-tool',
    );
    const out = (await tool.waitEvent((e) => 'answersB' in e, 'the udp tool')) as {
      answersA?: { ip: string }[];
      answersB?: { ip: string }[];
    };
    // Each node answered the genuine request once (not its replay, nor the forged, stale or
    // oversized ones), and the last genuine request once.
    assert.deepEqual(ips(out.answersB), nodeIps());
    assert.deepEqual(out.answersA!.map((a) => a.ip).sort(), nodeIps(), 'one answer per node on the first socket');
    for (const n of nodes) {
      for (const reason of ['bad-mac', 'stale', 'replayed', 'oversized'])
        await nodeLog(n, new RegExp(`"reason":"${reason}"[^\\n]*discovery datagram dropped`));
      // 20 of each within a second: one line per reason.
      assert.equal(n.log().match(/"reason":"bad-mac"/g)!.length, 1, n.log());
      assert.ok(pidAlive(n.pid));
    }
    for (const reason of ['replayed', 'bad-mac', 'stale', 'oversized'])
      await c.log(new RegExp(`"reason":"${reason}"[^\\n]*discovery datagram dropped`));
    assert.equal(c.stderr.match(/"reason":"bad-mac"/g)!.length, 1, c.stderr);
    assert.equal(c.stderr.match(/"reason":"oversized"/g)!.length, 1, c.stderr);
    // The forged node was never contacted (that would have been a fatal error event), and real
    // discovery still works: a new node is found by its announcement.
    const late = await startNode(hosts[4]!);
    try {
      const p1 = await c.phase(1);
      assert.deepEqual(ips(p1.nodes), [...nodeIps(), late.ip].sort());
      assertRanOn(await c.final(), [...nodeIps(), late.ip]);
    } finally {
      await late.stop();
    }
  });
});

// Runs after the suite's after hook: nothing of this run may remain.
test('no namespace and no process of the discovery run is left behind', { skip: skipReason ?? false }, async () => {
  await harness!.cleanup();
  const mine = listNamespaces().filter((n) => n.startsWith(`${harness!.prefix}-`));
  assert.deepEqual(mine, [], 'namespaces left behind');
  assert.deepEqual(harness!.livePids(), [], 'processes left alive');
  for (const n of everyNode) assert.equal(pidAlive(n.pid), false, `daemon ${n.name} (pid ${n.pid}) still alive`);
});
