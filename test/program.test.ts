/**
 * Program computations: the program is shipped to the node and spawned per job through a
 * runner with the stringified arguments; the result is its exit code; output is captured;
 * cancel kills it with everything it started; its CPU time counts.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { DispyJob, JobCluster } from '../src/index.js';
import { alive, startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
let dir: string;
before(async () => {
  node = await startNode({ host: '127.0.0.62', cpus: 2 });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-program-'));
});
after(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

function script(name: string, body: string, mode = 0o755): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, mode);
  return p;
}

const opts = () => clusterOn(node);
/** What a program computation looks like to TypeScript: any arguments (stringified), the exit code. */
type Program = (...args: unknown[]) => number;

test('a program runs with its arguments: exit code as result, output captured, non-zero exit still Finished', async () => {
  const prog = script('echo-args.sh', 'echo "argc=$# args=$*"\necho "to stderr" >&2\necho "cwd=$(pwd)"\nexit "$1"');
  const cluster = new JobCluster<Program>(prog, opts());
  try {
    assert.equal(cluster.name, 'echo-args.sh');
    const ok = cluster.submit(0, 'two words', 3.5);
    assert.equal(await ok.wait(), 0);
    assert.equal(ok.status, DispyJob.Finished);
    assert.match(ok.stdout, /^argc=3 args=0 two words 3\.5\n/);
    assert.match(ok.stdout, new RegExp(`cwd=${join(realpathSync(node.prefix), node.host, cluster.computeId)}\n`));
    assert.equal(ok.stderr, 'to stderr\n');
    const failing = cluster.submit(7);
    assert.equal(await failing.wait(), 7);
    assert.equal(failing.status, DispyJob.Finished, 'dispy: a non-zero exit code is a result, not a failure');
    assert.equal(failing.exception, null);
  } finally {
    await cluster.close();
  }
});

test('a program found on PATH; a missing or non-executable program is an error at construction', async () => {
  const prog = script('on-path-prog', 'echo "found $1"');
  const saved = process.env.PATH;
  process.env.PATH = `${dir}${delimiter}${saved ?? ''}`;
  let cluster: JobCluster<Program> | null = null;
  try {
    cluster = new JobCluster<Program>('on-path-prog', opts());
  } finally {
    process.env.PATH = saved;
  }
  try {
    assert.equal(cluster.name, 'on-path-prog');
    const job = cluster.submit('here');
    assert.equal(await job.wait(), 0);
    assert.equal(job.stdout, 'found here\n');
  } finally {
    await cluster.close();
  }
  assert.ok(prog);
  assert.throws(() => new JobCluster('no-such-dispyts-program-xyz', opts()), {
    code: 'DISPY_ERR_COMPUTATION',
    message: /not found on PATH/,
  });
  assert.throws(() => new JobCluster(join(dir, 'absent.sh'), opts()), { code: 'DISPY_ERR_COMPUTATION', message: /not found/ });
  // Without the execute bit, a #! line or an interpreter there is no way to run it (interpreters.test.ts).
  const plain = join(dir, 'not-exec.sh');
  writeFileSync(plain, 'exit 0\n', { mode: 0o644 });
  assert.throws(() => new JobCluster(plain, opts()), { code: 'DISPY_ERR_COMPUTATION', message: /not executable/ });
});

test('cancel a running program: it and the grandchild it forked are killed', async () => {
  const pidfile = join(dir, 'pids');
  const prog = script('forker.sh', `sleep 300 &\necho "$$ $!" > "$1"\nwait`);
  const cluster = new JobCluster<Program>(prog, opts());
  try {
    const job = cluster.submit(pidfile);
    await until(() => existsSync(pidfile) && readFileSync(pidfile, 'utf8').trim().split(' ').length === 2, 10_000, 'program pids');
    const [shPid, sleepPid] = readFileSync(pidfile, 'utf8').trim().split(' ').map(Number) as [number, number];
    assert.ok(alive(shPid) && alive(sleepPid));
    await until(() => job.status === DispyJob.Running, 5_000, 'job running');
    assert.equal(await cluster.cancel(job), 0);
    await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
    assert.equal(job.status, DispyJob.Terminated);
    await until(() => !alive(shPid) && !alive(sleepPid), 5_000, 'program and grandchild to be gone');
    // The node carries on (the runner was replaced).
    const again = cluster.submit(join(dir, 'pids2'));
    await until(() => existsSync(join(dir, 'pids2')), 10_000, 'second program');
    await cluster.cancel(again);
    await assert.rejects(again.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  } finally {
    await cluster.close();
  }
});

test('a program killed by a signal is Terminated with the signal named', async () => {
  const prog = script('suicide.sh', 'echo before\nkill -KILL $$');
  const cluster = new JobCluster<Program>(prog, opts());
  try {
    const job = cluster.submit();
    await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
    assert.equal(job.status, DispyJob.Terminated);
    assert.match(job.exception!, /killed by signal SIGKILL/);
    assert.equal(job.stdout, 'before\n');
  } finally {
    await cluster.close();
  }
});

test('the CPU time of a program job is counted', async () => {
  const prog = script('burn.sh', 'i=0\nwhile [ "$i" -lt "$1" ]; do i=$((i+1)); done\necho "$i"');
  const cluster = new JobCluster<Program>(prog, opts());
  try {
    const job = cluster.submit(400_000);
    assert.equal(await job.wait(), 0);
    assert.equal(job.stdout, '400000\n');
    const n = cluster.status().nodes[0]!;
    // The shell's loop takes a few tenths of a second of CPU (however loaded the machine);
    // the runner itself only spawns it and waits (a few ms).
    assert.ok(n.cpuUsed > 0.1, `cpuUsed ${n.cpuUsed} s`);
  } finally {
    await cluster.close();
  }
});
