/**
 * One job suite for the three kinds of computation — a function, a module and a program — on
 * one real node: a job's result, its captured output, a failing job, cancelling a running job
 * (it and the process it started are killed) and maxRuntime (the job is killed, the node runs
 * the next job of the same cluster). Each kind does the same work: `double X` prints to stdout
 * and stderr and answers 2·X (a program answers with its exit code), `fail X` fails, `hang FILE`
 * starts a `sleep 30`, writes "its pid, the sleep's pid" to FILE and waits for the sleep.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DispyError, DispyJob, JobCluster } from '../src/index.js';
import { clusterOn, startNode, type TestNode, until } from './helpers/daemon.js';

type Work = (mode: string, arg: string | number) => unknown;

/** The function computation (and, written out as a module below, the module computation). */
async function work(mode: string, arg: string | number): Promise<number> {
  if (mode === 'double') {
    console.log(`out ${arg}`);
    console.error(`err ${arg}`);
    return 2 * Number(arg);
  }
  if (mode === 'fail') throw new RangeError(`failed ${arg}`);
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const { writeFileSync } = require('node:fs') as typeof import('node:fs');
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  writeFileSync(String(arg), `${process.pid} ${child.pid}`);
  await new Promise((r) => child.once('exit', r));
  return -1;
}

const MODULE = `import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
export async function work(mode, arg) {
  if (mode === 'double') {
    console.log(\`out \${arg}\`);
    console.error(\`err \${arg}\`);
    return 2 * Number(arg);
  }
  if (mode === 'fail') throw new RangeError(\`failed \${arg}\`);
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  writeFileSync(String(arg), \`\${process.pid} \${child.pid}\`);
  await new Promise((r) => child.once('exit', r));
  return -1;
}
`;

const PROGRAM = `#!/bin/sh
case "$1" in
  double) echo "out $2"; echo "err $2" >&2; exit $(($2 * 2)) ;;
  fail) echo "failed $2" >&2; exit 3 ;;
  hang) sleep 30 & echo "$$ $!" > "$2"; wait ;;
esac
`;

let node: TestNode;
let dir: string;
before(async () => {
  node = await startNode({ host: '127.0.0.148', cpus: 1, logLevel: 'info' });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-job-kinds-'));
});
after(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Kind {
  name: 'function' | 'module' | 'program';
  make(): JobCluster<Work>;
}

const KINDS: Kind[] = [
  { name: 'function', make: () => new JobCluster<Work>(work, clusterOn(node)) },
  {
    name: 'module',
    make: () => {
      const file = join(dir, 'job-kinds-work.mjs');
      writeFileSync(file, MODULE);
      return new JobCluster<Work>({ module: file, export: 'work' }, clusterOn(node));
    },
  },
  {
    name: 'program',
    make: () => {
      const file = join(dir, 'job-kinds-work.sh');
      writeFileSync(file, PROGRAM);
      chmodSync(file, 0o755);
      return new JobCluster<Work>(file, clusterOn(node));
    },
  },
];

/**
 * Whether `pid` runs: a zombie counts as gone (killed processes left to init may wait seconds
 * to be reaped there, and `alive` still sees them).
 */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return false;
  }
}

/** Waits for a `hang` job's pid file and returns the job's pid and its sleep's pid, both alive. */
async function hangPids(file: string): Promise<[number, number]> {
  const text = await until(
    () => (existsSync(file) && /^\d+ \d+$/.test(readFileSync(file, 'utf8').trim()) ? readFileSync(file, 'utf8') : ''),
    15_000,
    `pids in ${file}`,
  );
  const pids = text.trim().split(' ').map(Number) as [number, number];
  assert.ok(pids.every(running), 'the job and its sleep run');
  return pids;
}

/** The node still runs jobs of this cluster: its CPU was given back. */
async function nextJobRuns(cluster: JobCluster<Work>): Promise<void> {
  const next = cluster.submit('double', 4);
  assert.equal(await next.wait(), 8);
  assert.equal(next.status, DispyJob.Finished);
}

for (const kind of KINDS) {
  describe(`${kind.name} computation`, () => {
    let cluster: JobCluster<Work>;
    before(() => {
      cluster = kind.make();
    });
    after(async () => {
      await cluster.close();
    });

    test('a job returns its result and ends Finished', async () => {
      const job = cluster.submit('double', 21);
      assert.equal(await job.wait(), 42);
      assert.equal(job.status, DispyJob.Finished);
      assert.equal(job.result, 42);
      assert.equal(job.exception, null);
      assert.equal(job.ipAddr, node.host);
    });

    test('stdout and stderr are captured per job', async () => {
      const jobs = [cluster.submit('double', 5), cluster.submit('double', 6)];
      await Promise.all(jobs.map((j) => j.wait()));
      assert.deepEqual(
        jobs.map((j) => [j.stdout, j.stderr]),
        [
          ['out 5\n', 'err 5\n'],
          ['out 6\n', 'err 6\n'],
        ],
      );
    });

    if (kind.name === 'program') {
      test('a non-zero exit is a result (as in dispy): Finished with the exit code, the error text in stderr', async () => {
        const job = cluster.submit('fail', 7);
        assert.equal(await job.wait(), 3);
        assert.equal(job.status, DispyJob.Finished);
        assert.equal(job.exception, null);
        assert.equal(job.stderr, 'failed 7\n');
      });
    } else {
      test('an exception ends the job Terminated with the error text', async () => {
        const job = cluster.submit('fail', 7);
        await assert.rejects(job.wait(), (e: DispyError) => e.code === 'DISPY_ERR_JOB_TERMINATED' && /failed 7/.test(e.message));
        assert.equal(job.status, DispyJob.Terminated);
        assert.match(job.exception!, /^RangeError: failed 7\n\s+at /);
        assert.equal(job.result, null);
      });
    }

    test('cancel of a running job ends it Terminated and kills it with the process it started', async () => {
      const file = join(dir, `${kind.name}-cancel`);
      const job = cluster.submit('hang', file);
      const [jobPid, sleepPid] = await hangPids(file);
      // The job may write its file before the client has heard that it started.
      await until(() => job.status === DispyJob.Running, 10_000, 'Running in the client');
      assert.equal(await cluster.cancel(job), 0);
      await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
      assert.equal(job.status, DispyJob.Terminated);
      assert.match(job.exception!, /terminated on request of the client/);
      assert.equal(job.result, null);
      await until(() => !running(jobPid) && !running(sleepPid), 5_000, 'the job and its sleep to be gone');
      assert.equal(await cluster.cancel(job), -1, 'a settled job cannot be cancelled again');
      await nextJobRuns(cluster);
    });

    test('maxRuntime ends a job running too long Terminated (DISPY_ERR_MAX_RUNTIME); the node runs the next job', async () => {
      const file = join(dir, `${kind.name}-max-runtime`);
      const t0 = Date.now();
      const job = cluster.submitWith({ maxRuntime: 1 }, 'hang', file);
      const [jobPid, sleepPid] = await hangPids(file);
      await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
      const took = Date.now() - t0;
      assert.ok(took >= 950 && took < 20_000, `terminated after ${took} ms`);
      assert.equal(job.status, DispyJob.Terminated);
      assert.match(job.exception!, /DISPY_ERR_MAX_RUNTIME: job terminated after running for its maxRuntime of 1 s/);
      assert.equal(job.result, null);
      await until(() => !running(jobPid) && !running(sleepPid), 5_000, 'the job and its sleep to be gone');
      await nextJobRuns(cluster);
    });
  });
}
