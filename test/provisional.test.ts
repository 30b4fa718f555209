/** dispyProvisionalResult: ProvisionalResult events and job.result updates before the final one. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, DispyJob } from '../src/index.js';
import { ROOT, TEST_SECRET, startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

declare function dispyProvisionalResult(value: unknown): void;

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.80', cpus: 1 });
});
after(async () => {
  await node.stop();
});

test('provisional results arrive in order, then the final one', async () => {
  const seen: [number, unknown][] = [];
  const statuses: number[] = [];
  const cluster = new JobCluster(
    async (n: number) => {
      for (let i = 1; i <= n; i++) {
        dispyProvisionalResult({ step: i });
        await new Promise((r) => setTimeout(r, 30));
      }
      return { done: n };
    },
    {
      nodes: [{ host: node.host, port: node.port }],
      secret: TEST_SECRET,
      jobStatus: (job) => {
        statuses.push(job.status);
        seen.push([job.status, job.result]);
      },
    },
  );
  const job = cluster.submit(3);
  assert.deepEqual(await job.wait(), { done: 3 });
  await cluster.close();
  assert.deepEqual(statuses, [DispyJob.ProvisionalResult, DispyJob.ProvisionalResult, DispyJob.ProvisionalResult, DispyJob.Finished]);
  // Each provisional event carries the job as it was then, however late it is delivered.
  assert.deepEqual(
    seen.map(([, r]) => r),
    [{ step: 1 }, { step: 2 }, { step: 3 }, { done: 3 }],
  );
  assert.equal(job.status, DispyJob.Finished);
});

test('a provisional result is visible on the job while it still runs', async () => {
  const cluster = new JobCluster(async () => {
    dispyProvisionalResult('halfway');
    await new Promise((r) => setTimeout(r, 1500));
    return 'end';
  }, clusterOn(node));
  const job = cluster.submit();
  const t0 = Date.now();
  while (job.result !== 'halfway' && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
  assert.equal(job.result, 'halfway');
  assert.equal(job.status, DispyJob.ProvisionalResult);
  assert.equal(await job.wait(), 'end');
  await cluster.close();
});

/** Resident memory of a process, in bytes. */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

test('toward a client that does not read, provisional results are coalesced to the latest, not piled up', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-flood-'));
  const marker = join(dir, 'flooded');
  const count = 2000;
  const size = 64 * 1024;
  const proc = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'test/fixtures/provisional-flood.ts'),
      node.host,
      String(node.port),
      TEST_SECRET,
      String(count),
      String(size),
      marker,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    await until(() => out.includes('started'), 30_000, 'the flooding job to start');
    // The client program stops reading: the node's connection to it backs up.
    proc.kill('SIGSTOP');
    const before = rss(node.pid);
    writeFileSync(`${marker}.go`, '');
    // Until every provisional result left the runner (the node has read all but the last few).
    let peak = before;
    await until(
      () => {
        peak = Math.max(peak, rss(node.pid));
        return existsSync(marker);
      },
      60_000,
      'the job to send every provisional result',
    );
    proc.kill('SIGCONT');
    await exited;
    const end = JSON.parse(out.trim().split('\n').pop()!) as { received: number; last: number; result: number };
    assert.equal(end.result, count);
    assert.ok(end.received < count / 2, `${end.received} of ${count} provisional results were sent on`);
    assert.ok(peak - before < 64 * 1024 * 1024, `the node grew by ${((peak - before) / 1024 / 1024).toFixed(0)} MiB`);
  } finally {
    if (proc.exitCode === null) {
      proc.kill('SIGCONT');
      proc.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
});
