/** Daemon options that change its life: --zombie-interval, --serve, --idle-exit, --clean. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster } from '../src/index.js';
import { ROOT, TEST_SECRET, alive, runCli, startNode, until, within, clusterOn } from './helpers/daemon.js';
import { killPids, taggedProcs } from './helpers/procs.js';

function pidsFrom(file: string): [number, number] {
  return readFileSync(file, 'utf8').split(' ').map(Number) as [number, number];
}

test('--zombie-interval: the jobs of a client that vanished are killed and the node is free again', async () => {
  const node = await startNode({ host: '127.0.0.31', cpus: 1, args: ['--zombie-interval', '1'] });
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-zombie-'));
  let client: ChildProcess | null = null;
  try {
    const file = join(dir, 'pids');
    client = spawn(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'test/fixtures/vanishing-client.ts'), node.host, String(node.port), TEST_SECRET, file],
      {
        cwd: ROOT,
        stdio: 'ignore',
      },
    );
    await until(() => existsSync(file) && readFileSync(file, 'utf8').includes(' '), 15_000, 'the job to start');
    const [jobPid, childPid] = pidsFrom(file);
    const exited = new Promise((r) => client!.once('exit', r));
    client.kill('SIGKILL');
    await exited;
    assert.ok(alive(jobPid), 'the job outlives its client until the zombie interval passes');
    await until(() => !alive(jobPid) && !alive(childPid), 10_000, 'the zombie job and its child to be killed');
    await until(() => /client did not return/.test(node.log()), 5_000, 'the log to say why');
    const cluster = new JobCluster((x: number) => x * 2, clusterOn(node));
    assert.equal(await cluster.submit(21).wait(), 42, 'another client gets the node');
    await cluster.close();
  } finally {
    // A failure before the client was killed must not leave it behind.
    if (client && client.exitCode === null && client.signalCode === null) client.kill('SIGKILL');
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--serve 1: the daemon exits after serving one client', async () => {
  const node = await startNode({ host: '127.0.0.32', cpus: 1, args: ['--serve', '1'] });
  const cluster = new JobCluster((x: number) => x + 1, clusterOn(node));
  assert.equal(await cluster.submit(1).wait(), 2);
  await cluster.close();
  assert.equal(await node.exited, 0);
});

/** The times (ms, the daemon's clock) of its log lines with message `msg`. */
function logTimes(log: string, msg: string): number[] {
  return log.split('\n').flatMap((line) => {
    try {
      const o = JSON.parse(line) as { msg?: string; time?: number };
      return o.msg === msg && typeof o.time === 'number' ? [o.time] : [];
    } catch {
      return [];
    }
  });
}

test('--idle-exit: a node no client uses exits by itself, counting from its start or from when its last client left, never while one is connected', async () => {
  const compute = async (ms: number) => {
    await new Promise((r) => setTimeout(r, ms));
    return ms;
  };
  const [lonely, quick, long] = await Promise.all([
    startNode({ host: '127.0.0.65', cpus: 1, args: ['--idle-exit', '1'] }),
    // Intervals long enough for a client to connect on a loaded machine: a node whose client
    // came too late would exit first, and the test would wait for a job that cannot run.
    startNode({ host: '127.0.0.66', cpus: 1, args: ['--idle-exit', '6'] }),
    startNode({ host: '127.0.0.67', cpus: 1, args: ['--idle-exit', '4'] }),
  ]);
  // Intervals are checked on the daemon's own log times: the countdown starts just before it
  // logs 'node ready' or 'connection closed', and it logs the exit when the countdown ends.
  const EXIT = 'no client connected for the idle-exit interval; exiting';
  const waited = (node: typeof lonely, from: string) => logTimes(node.log(), EXIT)[0]! - logTimes(node.log(), from).at(-1)!;
  await Promise.all([
    (async () => {
      assert.equal(await within(lonely.exited, 15_000, 'the unused node to exit'), 0);
      assert.ok(waited(lonely, 'node ready') >= 950, `exited ${waited(lonely, 'node ready')} ms after it started`);
    })(),
    (async () => {
      // A client that leaves before the interval since the start ran out: the node then waits
      // a whole interval from that moment.
      const cluster = new JobCluster(compute, { nodes: [{ host: quick.host, port: quick.port }], secret: TEST_SECRET });
      assert.equal(await within(cluster.submit(1).wait(), 30_000, 'the job on the node'), 1);
      await within(cluster.close(), 30_000, 'the cluster to close');
      assert.equal(await within(quick.exited, 20_000, 'the node to exit after its client left'), 0);
      assert.ok(waited(quick, 'connection closed') >= 5950, `exited ${waited(quick, 'connection closed')} ms after its client left`);
    })(),
    (async () => {
      const cluster = new JobCluster(compute, { nodes: [{ host: long.host, port: long.port }], secret: TEST_SECRET });
      try {
        // A job longer than the interval, then the connection idle for longer: the node stays.
        assert.equal(await within(cluster.submit(5000).wait(), 40_000, 'the long job'), 5000);
        await new Promise((r) => setTimeout(r, 1500));
        assert.ok(alive(long.pid), 'a node with a client connected does not exit');
      } finally {
        await within(cluster.close(), 30_000, 'the cluster to close');
      }
      assert.equal(await within(long.exited, 20_000, 'the node to exit after its client left'), 0);
      assert.ok(waited(long, 'connection closed') >= 3950, `exited ${waited(long, 'connection closed')} ms after its client left`);
    })(),
  ]);

  for (const bad of ['0', '-1', 'soon']) {
    const r = await runCli(['node', '--host', '127.0.0.68', '--port', '0', `--idle-exit=${bad}`]);
    assert.equal(r.code, 2);
    assert.match(r.err, /DISPY_ERR_INVALID_OPTION: --idle-exit: expected a positive number of seconds/);
  }
});

test('--clean kills what the jobs of a SIGKILLed daemon and runner left behind; without it the daemon warns', async () => {
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-clean-'));
  const host = '127.0.0.33';
  const left = new Set<number>();
  try {
    const first = await startNode({ host, cpus: 1, args: ['--dest-path-prefix', prefix] });
    // A child in the runner's group and a double-forked one in a new session.
    const cluster = new JobCluster(
      async () => {
        const { spawn } = require('node:child_process');
        spawn('sleep', ['310'], { stdio: 'ignore' });
        spawn('setsid', ['-f', 'sleep', '311'], { stdio: 'ignore' });
        await new Promise(() => undefined);
      },
      { nodes: [{ host: first.host, port: first.port }], secret: TEST_SECRET },
    );
    cluster.submit();
    // By command line: a tagged process caught between fork and exec (or `setsid` before its
    // own fork) is not one of the two that must outlive the daemon.
    const jobProcs = () => taggedProcs(`${host}/`).filter((p) => /\/j\d+$/.test(p.tag) && /^sleep 31[01]$/.test(p.cmd));
    await until(() => jobProcs().length === 2, 15_000, "the job's children");
    for (const p of jobProcs()) left.add(p.pid);
    const runners = taggedProcs(`${host}/`).filter((p) => /runner-main/.test(p.cmd));
    // Daemon and runners die together (the OOM killer, kill -9 of both): nobody is left to
    // kill the children, which carry the tag.
    process.kill(first.pid, 'SIGSTOP');
    killPids(runners.map((p) => p.pid));
    // Unreaped by the stopped daemon, they linger as zombies, which carry no environment.
    await until(() => !taggedProcs(`${host}/`).some((p) => runners.some((r) => r.pid === p.pid)), 5_000, 'the runners to die');
    await first.stop('SIGKILL');
    await cluster.close({ terminate: true });
    assert.ok([...left].every(alive), "the job's children outlived daemon and runner");

    const warned = await startNode({ host, cpus: 1, args: ['--dest-path-prefix', prefix] });
    await until(() => /job processes of a previous daemon are still alive; start with --clean/.test(warned.log()), 5_000, 'the warning');
    for (const pid of left) assert.match(warned.log(), new RegExp(`"pids":\\[[^\\]]*\\b${pid}\\b`), `the warning names ${pid}`);
    await warned.stop();
    assert.ok([...left].every(alive), 'kept without --clean');

    // The warned daemon remembered them: --clean after it still finds them.
    const cleaner = await startNode({ host, cpus: 1, args: ['--dest-path-prefix', prefix, '--clean'] });
    await until(() => [...left].every((pid) => !alive(pid)), 5_000, 'the leftovers to be killed');
    await cleaner.stop();
  } finally {
    // Whatever happened above, nothing the test started outlives it.
    killPids([...left, ...taggedProcs(`${host}/`).map((p) => p.pid)]);
    rmSync(prefix, { recursive: true, force: true });
  }
});

test('--parent-pid: the daemon stops when that process exits', async () => {
  const parent = spawn('sleep', ['1'], { stdio: 'ignore' });
  const node = await startNode({ host: '127.0.0.30', cpus: 1, args: ['--parent-pid', String(parent.pid)] });
  assert.equal(await node.exited, 0);
  assert.match(node.log(), /its parent process exited/);
});

test('--secret-file: the secret from a private file; a readable file, a missing one or both flags are refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-secret-file-'));
  const run = (args: string[]) =>
    new Promise<{ code: number | null; err: string }>((resolve) => {
      const p = spawn(process.execPath, [join(ROOT, 'dist/cli/main.js'), 'node', '--host', '127.0.0.203', '--port', '0', ...args], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let err = '';
      p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      p.once('close', (code) => resolve({ code, err }));
    });
  try {
    const open = join(dir, 'open');
    writeFileSync(open, 'x'.repeat(32), { mode: 0o644 });
    const loose = await run(['--secret-file', open]);
    assert.equal(loose.code, 2);
    assert.match(loose.err, /DISPY_ERR_SECRET_FILE.*readable by other users/);
    assert.match((await run(['--secret-file', join(dir, 'missing')])).err, /DISPY_ERR_SECRET_FILE.*cannot use the secret file/);
    assert.match((await run(['--secret-file', open, '--secret', 'abc'])).err, /not both/);

    const file = join(dir, 'secret');
    writeFileSync(file, `${TEST_SECRET}\n`, { mode: 0o600 });
    const node = await startNode({ host: '127.0.0.202', cpus: 1, secret: TEST_SECRET, args: ['--secret-file', file] }).catch(
      (e: Error) => e,
    );
    // startNode passes --secret itself: both flags are refused...
    assert.ok(node instanceof Error && /not both/.test(node.message), String(node));
    // ...so run the daemon by hand with the file only.
    const p = spawn(
      process.execPath,
      [
        join(ROOT, 'dist/cli/main.js'),
        'node',
        '--host',
        '127.0.0.202',
        '--port',
        '0',
        '--cpus',
        '1',
        '--secret-file',
        file,
        '--dest-path-prefix',
        dir,
        '--parent-pid',
        String(process.pid),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    try {
      let out = '';
      p.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      const port = Number((await until(() => /ready on 127\.0\.0\.202:(\d+)/.exec(out), 30_000, 'ready'))![1]);
      const cluster = new JobCluster((x: number) => x * 3, { nodes: [{ host: '127.0.0.202', port }], secret: TEST_SECRET });
      assert.equal(await cluster.submit(5).wait(), 15, 'a client with the secret in the file is served');
      await cluster.close();
    } finally {
      p.kill('SIGKILL');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
