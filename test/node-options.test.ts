/** Daemon options that change its life: --zombie-interval, --serve, --clean. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster } from '../src/index.js';
import { ROOT, TEST_SECRET, alive, startNode, until } from './helpers/daemon.js';

function pidsFrom(file: string): [number, number] {
  return readFileSync(file, 'utf8').split(' ').map(Number) as [number, number];
}

test('--zombie-interval: the jobs of a client that vanished are killed and the node is free again', async () => {
  const node = await startNode({ host: '127.0.0.31', cpus: 1, args: ['--zombie-interval', '1'] });
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-zombie-'));
  try {
    const file = join(dir, 'pids');
    const client = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/fixtures/vanishing-client.ts'), node.host, String(node.port), TEST_SECRET, file], {
      cwd: ROOT,
      stdio: 'ignore',
    });
    await until(() => existsSync(file) && readFileSync(file, 'utf8').includes(' '), 15_000, 'the job to start');
    const [jobPid, childPid] = pidsFrom(file);
    client.kill('SIGKILL');
    await new Promise((r) => client.once('exit', r));
    assert.ok(alive(jobPid), 'the job outlives its client until the zombie interval passes');
    await until(() => !alive(jobPid) && !alive(childPid), 10_000, 'the zombie job and its child to be killed');
    await until(() => /client did not return/.test(node.log()), 5_000, 'the log to say why');
    const cluster = new JobCluster((x: number) => x * 2, { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET });
    assert.equal(await cluster.submit(21).wait(), 42, 'another client gets the node');
    await cluster.close();
  } finally {
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--serve 1: the daemon exits after serving one client', async () => {
  const node = await startNode({ host: '127.0.0.32', cpus: 1, args: ['--serve', '1'] });
  const cluster = new JobCluster((x: number) => x + 1, { nodes: [{ host: node.host, port: node.port }], secret: TEST_SECRET });
  assert.equal(await cluster.submit(1).wait(), 2);
  await cluster.close();
  assert.equal(await node.exited, 0);
});

test('--clean kills a job runner a SIGKILLed daemon left behind; without it the daemon warns', async () => {
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-clean-'));
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-clean-pids-'));
  let runnerPid = 0;
  try {
    const first = await startNode({ host: '127.0.0.33', cpus: 1, args: ['--dest-path-prefix', prefix] });
    const file = join(dir, 'pid');
    // A busy loop never yields, so the runner does not notice its daemon die.
    const cluster = new JobCluster(
      (path: string) => {
        require('node:fs').writeFileSync(path, String(process.pid));
        for (;;);
      },
      { nodes: [{ host: first.host, port: first.port }], secret: TEST_SECRET },
    );
    cluster.submit(file);
    await until(() => existsSync(file) && readFileSync(file, 'utf8').length > 0, 15_000, 'the busy job');
    runnerPid = Number(readFileSync(file, 'utf8'));
    await first.stop('SIGKILL');
    await cluster.close({ terminate: true });
    assert.ok(alive(runnerPid), 'the orphaned runner is still spinning');

    const warned = await startNode({ host: '127.0.0.33', cpus: 1, args: ['--dest-path-prefix', prefix] });
    await until(() => /still alive; start with --clean/.test(warned.log()), 5_000, 'the warning');
    await warned.stop();
    assert.ok(alive(runnerPid));

    const cleaner = await startNode({ host: '127.0.0.33', cpus: 1, args: ['--dest-path-prefix', prefix, '--clean'] });
    await until(() => !alive(runnerPid), 5_000, 'the orphan to be killed');
    await cleaner.stop();
  } finally {
    // Whatever happened above, the spinning orphan must not outlive the test.
    if (runnerPid && alive(runnerPid)) process.kill(runnerPid, 'SIGKILL');
    rmSync(prefix, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--parent-pid: the daemon stops when that process exits', async () => {
  const parent = spawn('sleep', ['1'], { stdio: 'ignore' });
  const node = await startNode({ host: '127.0.0.30', cpus: 1, args: ['--parent-pid', String(parent.pid)] });
  assert.equal(await node.exited, 0);
  assert.match(node.log(), /its parent process exited/);
});
