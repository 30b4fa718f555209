/**
 * slurmNodes against a real Slurm (issue 23): Debian's slurmctld and slurmd with their own
 * munged, in a network namespace with only lo up (test/helpers/slurm.ts). A client program in
 * that namespace submits a batch job whose two tasks run `dispyts slurm-node` on 127.0.0.63 and
 * 127.0.0.64 (loopback:63: both tasks run on the one slurmd host), runs a computation on them
 * and closes; another is SIGKILLed while its jobs run, and its nodes' --idle-exit releases the
 * allocation. Skipped, with the reason printed, where the packages are missing or `ip netns` is
 * refused.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/daemon.js';
import { SlurmSandbox, slurmUnavailable } from '../helpers/slurm.js';
import { liveClient, type LiveClient } from './harness.js';

const skipReason = slurmUnavailable();
if (skipReason) process.stdout.write(`# Slurm suite skipped: ${skipReason}\n`);

const IDLE_EXIT = 3;
const SLURM = { nodes: 2, nodesPerHost: 2, cpusPerNode: 1, host: 'loopback:63', idleExit: IDLE_EXIT, pollInterval: 0.2 };

describe('slurmNodes on a real Slurm', { skip: skipReason }, () => {
  const sandbox = skipReason ? undefined : new SlurmSandbox();

  before(async () => {
    await sandbox!.start();
  });

  after(async () => {
    await sandbox?.stop();
  });

  function client(cfg: Record<string, unknown>, timeoutMs = 45_000): LiveClient {
    const script = join(ROOT, 'test', 'netns', 'fixtures', 'slurm-client.mjs');
    const proc = sandbox!.spawn([process.execPath, script, JSON.stringify({ sharedDir: sandbox!.sharedDir, ...cfg })]);
    return liveClient(proc, timeoutMs);
  }

  /** Bounded wait for `check`, polling every 100 ms. */
  async function until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<number> {
    const start = Date.now();
    while (!(await check())) {
      if (Date.now() - start > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}\n${sandbox!.logs()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return Date.now() - start;
  }

  /** Command lines of the processes in the namespace besides the sandbox's daemons. */
  function strayCommands(): string[] {
    return sandbox!.strayPids().map((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      } catch {
        return '';
      }
    });
  }

  /** Waits (10 s at most) until only the sandbox's daemons are left in the namespace. */
  async function noStrays(what: string): Promise<void> {
    await until(() => strayCommands().length === 0, 10_000, what).catch((err: Error) => {
      throw new Error(`${err.message}\nstill running:\n${strayCommands().join('\n')}`);
    });
  }

  test('a computation runs on nodes started by sbatch; closing the cluster releases the allocation', async () => {
    // Nodes that would idle for a minute: only scancel can release the allocation in time.
    const c = client({ mode: 'run', slurm: { ...SLURM, idleExit: 60 }, jobs: 6, ms: 300 });
    const ready = await c.waitFor<{ jobId: string; dir: string; secret: string; nodes: { host: string; port: number; cpus: number }[] }>(
      (l) => l.t === 'ready',
      30_000,
      'the nodes to be ready',
    );
    assert.deepEqual(
      ready.nodes.map((n) => [n.host, n.cpus]),
      [
        ['127.0.0.63', 1],
        ['127.0.0.64', 1],
      ],
      'one node per task, each with the one CPU Slurm gave it',
    );
    // The secret reaches the nodes in a file, never on a command line (the script nor argv).
    assert.ok(!readFileSync(join(ready.dir, 'job.sh'), 'utf8').includes(ready.secret), 'the batch script does not hold the secret');
    assert.ok(!existsSync(join(ready.dir, 'secret')), 'the secret file is deleted once every node has read it');
    const { results } = await c.waitFor<{ results: { y: number; node: string }[] }>((l) => l.t === 'results', 30_000, 'the results');
    assert.deepEqual(
      results.map((r) => r.y),
      [0, 1, 4, 9, 16, 25],
    );
    assert.deepEqual([...new Set(results.map((r) => r.node))].sort(), ['localhost-0', 'localhost-1'], 'both nodes ran jobs');
    await c.waitFor((l) => l.t === 'closed', 30_000, 'the cluster to close');
    // close() resolves once Slurm no longer holds the allocation: nothing is left to wait for.
    assert.deepEqual(await sandbox!.jobs(), [], 'squeue lists no job after close()');
    const r = await c.result;
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!existsSync(ready.dir), 'the allocation directory is removed');
    await noStrays('every process of the job to end');
  });

  test('a SIGKILLed client: its nodes exit after --idle-exit and Slurm frees the allocation', async () => {
    const c = client({ mode: 'hold', slurm: SLURM }, 60_000);
    const ready = await c.waitFor<{ jobId: string; dir: string; secret: string }>((l) => l.t === 'ready', 30_000, 'the nodes to be ready');
    await c.waitFor((l) => l.t === 'holding', 15_000, 'a job running on each node');
    assert.deepEqual(await sandbox!.jobs(), [ready.jobId]);
    const commands = strayCommands();
    assert.ok(commands.filter((cmd) => cmd.includes('slurm-node')).length >= 2, `the nodes run: ${commands.join('\n')}`);
    assert.ok(
      commands.every((cmd) => !cmd.includes(ready.secret)),
      'no process has the secret on its command line',
    );
    c.proc.kill('SIGKILL');
    await c.result;
    const killedAt = Date.now();
    const ms = await until(async () => (await sandbox!.jobs()).length === 0, (IDLE_EXIT + 10) * 1000, 'squeue to list no job');
    process.stdout.write(
      `# allocation released ${((Date.now() - killedAt) / 1000).toFixed(1)} s after SIGKILL (--idle-exit ${IDLE_EXIT})\n`,
    );
    assert.ok(ms <= (IDLE_EXIT + 10) * 1000);
    await noStrays('the nodes and their running jobs to end');
    // The killed program could not clean up; the job left neither the secret nor stale addresses.
    assert.deepEqual(
      readdirSync(ready.dir).filter((f) => f === 'secret' || f.startsWith('ready-')),
      [],
    );
  });

  test('a batch job that ends before its nodes are ready rejects with its state and output', async () => {
    const before = readdirSync(sandbox!.sharedDir);
    const c = client({ mode: 'fail', slurm: { ...SLURM, command: ['/bin/sh', '-c', 'echo no dispyts here >&2; exit 7', 'sh'] } });
    const r = await c.waitFor<{ code: string; message: string }>((l) => l.t === 'rejected', 30_000, 'slurmNodes to reject');
    assert.equal(r.code, 'DISPY_ERR_SLURM');
    assert.match(r.message, /ended \((FAILED|COMPLETED|no longer known)\) with 0 of 2 nodes ready/);
    assert.match(r.message, /no dispyts here/, 'the job output is in the message');
    assert.deepEqual(await sandbox!.jobs(), []);
    assert.deepEqual(readdirSync(sandbox!.sharedDir), before, 'its directory is removed');
  });
});
