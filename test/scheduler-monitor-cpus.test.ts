/**
 * The scheduler's monitor keeps the scheduler's CPU rule (DESIGN.md §4, dispy's --cooperative):
 * a shared node's CPUs belong to the scheduler, so through the monitor only an exclusive
 * computation, or any with --cooperative, may change them; the cluster JSON says
 * `"shared": true` otherwise, which the Manage page uses to offer no CPU editing. Real nodes
 * (127.0.0.168, 127.0.0.174), real schedulers (127.0.0.169, and 127.0.0.172 with --cooperative).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { NodeStatus } from '../src/client/status.js';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { startNode, until, type TestNode } from './helpers/daemon.js';
import { post, request } from './helpers/http-client.js';
import { RawClient, fn, startScheduler, type TestScheduler } from './helpers/scheduler.js';

const unavailable = browserUnavailable();
if (unavailable) console.log(`# browser check skipped: ${unavailable}`);

const WORK = fn('async function compute(ms) { await new Promise((r) => setTimeout(r, ms)); return ms; }');
let node: TestNode;
let node2: TestNode;
let plain: TestScheduler;
let coop: TestScheduler;

before(async () => {
  // One node per scheduler: a node serves one client (scheduler) at a time.
  [node, node2] = await Promise.all([
    startNode({ host: '127.0.0.168', cpus: 2, logLevel: 'warn' }),
    startNode({ host: '127.0.0.174', cpus: 2, logLevel: 'warn' }),
  ]);
  [plain, coop] = await Promise.all([
    startScheduler({ host: '127.0.0.169', nodes: [`${node.host}:${node.port}`], args: ['--httpd', '127.0.0.169:0'], logLevel: 'info' }),
    startScheduler({
      host: '127.0.0.172',
      nodes: [`${node2.host}:${node2.port}`],
      args: ['--httpd', '127.0.0.172:0', '--cooperative'],
      logLevel: 'info',
    }),
  ]);
});

after(async () => {
  await plain?.stop();
  await coop?.stop();
  await node?.stop();
  await node2?.stop();
});

type Cluster = { name: string; shared?: boolean; nodes: { ip_addr: string; cpus: number }[] };

/** Registers a computation, waits until the monitor shows it with its node; returns the client and id. */
async function computation(s: TestScheduler, name: string, exclusive: boolean) {
  const c = await RawClient.connect(s);
  const { computeId, name: shown } = await c.start(WORK, { name, exclusive });
  await c.waitFor((m) => m.t === 'node-status' && m.status === NodeStatus.Initialized);
  const view = await until(
    async () => (await request(`${s.httpUrl}/cluster_status`)).json<Cluster[]>().find((x) => x.name === shown && x.nodes.length),
    10_000,
    `${shown} on the monitor`,
  );
  return { c, computeId, view: view! };
}

test('without --cooperative: an exclusive computation may change its CPUs; a shared one is marked shared and may not', async () => {
  // Exclusive first: a closed cluster stays on the monitor and answers set_cpus too.
  const b = await computation(plain, 'alone', true);
  assert.equal(b.view.shared, undefined, 'an exclusive computation owns its nodes');
  const ok = await post(plain.httpUrl!, '/set_cpus', { [node.host]: 1 });
  assert.deepEqual(ok.json(), { [node.host]: 1 });
  assert.ok((await b.c.request({ t: 'close', computeId: b.computeId, terminate: true })).ok);
  b.c.close();

  const a = await computation(plain, 'sharedone', false);
  assert.equal(a.view.shared, true);
  const cpusBefore = a.view.nodes[0]!.cpus;
  const refused = await post(plain.httpUrl!, '/set_cpus', { [node.host]: 2 });
  assert.equal(refused.status, 200);
  assert.deepEqual(refused.json(), { [node.host]: -1 });
  await until(() => /shares its nodes with other programs/.test(plain.log()), 5000, 'the refusal logged');
  const after = (await request(`${plain.httpUrl}/cluster_status`)).json<Cluster[]>().find((x) => x.name === a.view.name)!;
  assert.equal(after.nodes[0]!.cpus, cpusBefore, 'the CPUs did not change');

  if (!unavailable) {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${plain.httpUrl}/manage.html`);
      const button = page.getByTestId('update-cpus');
      await button.waitFor({ timeout: 10_000 });
      assert.equal(await button.isDisabled(), true, 'the Manage page offers no CPU editing');
    } finally {
      await browser.close();
    }
  }
  assert.ok((await a.c.request({ t: 'close', computeId: a.computeId, terminate: true })).ok);
  a.c.close();
});

test('with --cooperative: any computation may change its nodes CPUs through the monitor', async () => {
  const a = await computation(coop, 'coopone', false);
  assert.equal(a.view.shared, undefined);
  const ok = await post(coop.httpUrl!, '/set_cpus', { [node2.host]: 1 });
  assert.deepEqual(ok.json(), { [node2.host]: 1 });
  assert.ok((await a.c.request({ t: 'close', computeId: a.computeId, terminate: true })).ok);
  a.c.close();
});
