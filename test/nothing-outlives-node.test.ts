/**
 * Nothing outlives its node: every runner and job process carries the node's tag in its
 * environment; a SIGKILLed daemon's runners take down everything tagged with them (a watchdog
 * thread does it while a job loops on the CPU), and cancelling a job kills what it started even
 * after it left the process group (`setsid`, a double fork re-parented to init).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyJob, JobCluster } from '../src/index.js';
import { startNode, until, clusterOn } from './helpers/daemon.js';
import { killPids, taggedProcs } from './helpers/procs.js';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'dispyts-outlive-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Starts a plain child and a double-forked one in a new session, then spins on the CPU forever. */
function spinAfterForking(): never {
  const { spawn } = require('node:child_process');
  spawn('sleep', ['300'], { stdio: 'ignore' });
  spawn('setsid', ['-f', 'sleep', '301'], { stdio: 'ignore' });
  for (;;);
}

/** Starts children, a double fork into a new session among them, then waits forever. */
async function waitAfterForking(): Promise<never> {
  const { spawn } = require('node:child_process');
  spawn('sleep', ['305'], { stdio: 'ignore' });
  spawn('setsid', ['-f', 'sleep', '306'], { stdio: 'ignore' });
  return new Promise<never>(() => undefined);
}

function sleeps(prefix: string, want: string[]): boolean {
  const cmds = taggedProcs(prefix).map((p) => p.cmd);
  return want.every((w) => cmds.includes(`sleep ${w}`));
}

test('a SIGKILLed daemon leaves nothing tagged alive: program, child and CPU-loop jobs', async () => {
  const node = await startNode({ host: '127.0.0.40', cpus: 2 });
  const prefix = `${node.host}/`;
  const seen = new Set<number>();
  const prog = join(dir, 'forking.sh');
  writeFileSync(prog, '#!/bin/sh\nsleep 302 &\nsetsid -f sleep 303\nsleep 304\n');
  chmodSync(prog, 0o755);
  const where = clusterOn(node);
  const program = new JobCluster<(...args: unknown[]) => number>(prog, where);
  let spinning: JobCluster | null = null;
  try {
    const jobs: DispyJob[] = [program.submit()];
    // A computation is set up in every runner: the spinning one would never answer a later setup.
    await until(() => jobs[0]!.status === DispyJob.Running, 20_000, 'the program running');
    spinning = new JobCluster(spinAfterForking, where);
    jobs.push(spinning.submit());
    await until(() => jobs.every((j) => j.status === DispyJob.Running), 20_000, 'both jobs running');
    await until(() => sleeps(prefix, ['300', '301', '302', '303', '304']), 15_000, 'every process the jobs start');
    const before = taggedProcs(prefix);
    for (const p of before) seen.add(p.pid);
    // The tag names the node and the job: runners `<host>/<daemon>/r<n>`, job processes `.../j<uid>`.
    assert.ok(
      before.every((p) => /^127\.0\.0\.40\/[0-9a-f]{24}\/r\d+(\/j\d+)?$/.test(p.tag)),
      before.map((p) => p.tag).join(' '),
    );
    assert.ok(before.filter((p) => /runner-main/.test(p.cmd)).length === 2, 'two runners tagged');
    assert.ok(
      before.some((p) => p.cmd === 'sleep 301' && /\/j\d+$/.test(p.tag)),
      'the double-forked child carries the job tag',
    );

    await node.stop('SIGKILL');
    const killedAt = Date.now();
    await until(() => taggedProcs(prefix).length === 0, 10_000, 'no tagged process left').catch(() => undefined);
    const left = taggedProcs(prefix);
    assert.deepEqual(
      left.map((p) => p.cmd),
      [],
      `tagged processes alive ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the daemon's SIGKILL`,
    );
  } finally {
    killPids([...seen, ...taggedProcs(prefix).map((p) => p.pid)]);
    await node.stop('SIGKILL');
    await Promise.all([spinning?.close({ terminate: true }), program.close({ terminate: true })]);
  }
});

test('cancel kills what the job started, also a grandchild that left with setsid', async () => {
  const node = await startNode({ host: '127.0.0.41', cpus: 1 });
  const prefix = `${node.host}/`;
  const seen = new Set<number>();
  const cluster = new JobCluster(waitAfterForking, clusterOn(node));
  try {
    const job = cluster.submit();
    // `setsid -f` forks and exits: until its parent is gone it is one of the job's processes too.
    const jobProcs = () => taggedProcs(prefix).filter((p) => /\/j\d+$/.test(p.tag));
    await until(
      () => job.status === DispyJob.Running && sleeps(prefix, ['305', '306']) && jobProcs().length === 2,
      15_000,
      'the job and its children',
    );
    const started = jobProcs();
    for (const p of started) seen.add(p.pid);
    assert.deepEqual(started.map((p) => p.cmd).sort(), ['sleep 305', 'sleep 306']);
    assert.equal(await cluster.cancel(job), 0);
    await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
    await until(() => taggedProcs(prefix).every((p) => !seen.has(p.pid)), 5_000, 'the children to be killed').catch(() => undefined);
    assert.deepEqual(
      taggedProcs(prefix)
        .filter((p) => seen.has(p.pid))
        .map((p) => p.cmd),
      [],
      'nothing the cancelled job started is alive',
    );
    // The node goes on with a fresh runner.
    const again = new JobCluster((x: number) => x * 2, clusterOn(node));
    assert.equal(await again.submit(21).wait(), 42);
    await again.close();
  } finally {
    killPids(seen);
    await cluster.close({ terminate: true });
    await node.stop();
  }
});
