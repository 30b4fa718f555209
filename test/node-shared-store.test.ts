/**
 * The per-node shared store (`dispyNodeShared`): exact under contention from 2 runners (200
 * increments each, with `add` and with `lock`), compare-and-set, its bounds enforced with
 * errors naming them, and gone once the computation closed. Address 127.0.0.74 only.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster } from '../src/index.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';

interface Shared {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
  delete(key: string): Promise<boolean>;
  add(key: string, delta?: number): Promise<number>;
  compareAndSet(key: string, expected: unknown, value: unknown): Promise<boolean>;
  lock<T>(name: string, fn: () => T | Promise<T>): Promise<T>;
}
declare const dispyNodeShared: Shared;

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.74', cpus: 2, args: ['--shared-store-keys', '20', '--shared-store-size', '4k'] });
});
after(async () => {
  await node.stop();
});

async function work(kind: string, n: number) {
  if (kind === 'add') {
    for (let i = 0; i < n; i++) await dispyNodeShared.add('count');
  } else if (kind === 'lock') {
    for (let i = 0; i < n; i++) {
      await dispyNodeShared.lock('counter', async () => {
        const v = ((await dispyNodeShared.get('locked')) as number | undefined) ?? 0;
        await new Promise((r) => setImmediate(r));
        await dispyNodeShared.set('locked', v + 1);
      });
    }
  } else if (kind === 'read') {
    return [await dispyNodeShared.get('count'), await dispyNodeShared.get('locked')];
  } else if (kind === 'cas') {
    const a = await dispyNodeShared.compareAndSet('cas', undefined, { v: 1 });
    const b = await dispyNodeShared.compareAndSet('cas', undefined, { v: 2 });
    const c = await dispyNodeShared.compareAndSet('cas', { v: 1 }, { v: 3 });
    return [a, b, c, await dispyNodeShared.get('cas'), await dispyNodeShared.delete('cas'), await dispyNodeShared.get('cas')];
  } else if (kind === 'bounds') {
    const out: string[] = [];
    try {
      await dispyNodeShared.set('big', 'x'.repeat(5000));
    } catch (err) {
      out.push(`${(err as { code: string }).code}: ${(err as Error).message}`);
    }
    try {
      for (let i = 0; i < 30; i++) await dispyNodeShared.set(`k${i}`, i);
    } catch (err) {
      out.push(`${(err as { code: string }).code}: ${(err as Error).message}`);
    }
    return out;
  }
  return process.pid;
}

test('2 runners × 200 increments give the exact total, with add and with lock; compareAndSet; bounds; gone after close', async () => {
  const cluster = new JobCluster(work, { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET });
  const pids = await Promise.all([cluster.submit('add', 200).wait(), cluster.submit('add', 200).wait()]);
  assert.notEqual(pids[0], pids[1], 'the two jobs ran in two runners at once');
  const locked = await Promise.all([cluster.submit('lock', 200).wait(), cluster.submit('lock', 200).wait()]);
  assert.notEqual(locked[0], locked[1]);
  assert.deepEqual(await cluster.submit('read', 0).wait(), [400, 400]);
  assert.deepEqual(await cluster.submit('cas', 0).wait(), [true, false, true, { v: 3 }, true, undefined]);
  const errors = (await cluster.submit('bounds', 0).wait()) as string[];
  assert.equal(errors.length, 2, errors.join('\n'));
  assert.match(errors[0]!, /^DISPY_ERR_SHARED_STORE_LIMIT: .*at most 4096 bytes \(--shared-store-size\)/);
  assert.match(errors[1]!, /^DISPY_ERR_SHARED_STORE_LIMIT: .*at most 20 keys and lock names \(--shared-store-keys\)/);
  await cluster.close();
  await until(() => /shared store dropped/.test(node.log()), 5000, "the daemon's log of the dropped store");
  // A new computation starts from an empty store.
  const next = new JobCluster(work, { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET });
  assert.deepEqual(await next.submit('read', 0).wait(), [undefined, undefined]);
  await next.close();
});
