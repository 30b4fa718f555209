/**
 * The parts of slurmNodes that need no Slurm: how a task picks its address, its ready file,
 * `dispyts slurm-node` run with the environment srun gives a task (a real node on 127.0.0.69),
 * and slurmNodes refusing bad options before it runs any Slurm command. The real-Slurm test is
 * test/netns/slurm.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, slurmNodes } from '../src/index.js';
import { parseHostFrom, readReadyFile, readyFileName, writeReadyFile } from '../src/protocol/slurm-ready.js';
import { slurmTaskEnv, taskAddress } from '../src/cli/slurm-node-command.js';
import { CLI, TEST_SECRET, runCli, until, within } from './helpers/daemon.js';

// Nothing here may reach a real Slurm command: one outside a Slurm sandbox would look for a
// configuration over DNS.
process.env.PATH = '/nonexistent-dispyts-test';

test('host-from: hostname, interface:NAME and loopback:N; anything else is refused by name', async () => {
  assert.deepEqual(parseHostFrom('hostname'), { kind: 'hostname' });
  assert.deepEqual(parseHostFrom('interface:ib0'), { kind: 'interface', name: 'ib0' });
  assert.deepEqual(parseHostFrom('loopback:63'), { kind: 'loopback', base: 63 });
  for (const bad of ['', 'loopback:0', 'loopback:255', 'interface:', 'interface:a b', '10.0.0.1', 7])
    assert.throws(() => parseHostFrom(bad), { code: 'DISPY_ERR_INVALID_OPTION', message: /'hostname', 'interface:NAME' or 'loopback:N'/ });

  assert.equal(await taskAddress({ kind: 'loopback', base: 63 }, 1), '127.0.0.64');
  await assert.rejects(taskAddress({ kind: 'loopback', base: 250 }, 5), /gives task 5 no address/);
  assert.equal(await taskAddress({ kind: 'interface', name: 'lo' }, 0), '127.0.0.1');
  await assert.rejects(taskAddress({ kind: 'interface', name: 'nosuch0' }, 0), /no network interface nosuch0/);
  // The host name is resolved by an injected resolver: no lookup leaves this process.
  const resolver = (addrs: string[]) => async () => addrs;
  assert.equal(await taskAddress({ kind: 'hostname' }, 0, resolver(['127.0.1.1', '192.0.2.7'])), '192.0.2.7');
  await assert.rejects(taskAddress({ kind: 'hostname' }, 0, resolver(['127.0.1.1'])), /resolves only to 127\.0\.1\.1.*interface:NAME/);
  await assert.rejects(
    taskAddress({ kind: 'hostname' }, 0, async () => {
      throw new Error('ENOTFOUND');
    }),
    /cannot resolve this host's name.*ENOTFOUND/,
  );
});

test("a task's Slurm environment: job, rank and CPUs; outside a job step it is refused", () => {
  assert.deepEqual(slurmTaskEnv({ SLURM_JOB_ID: '12', SLURM_PROCID: '3', SLURM_CPUS_PER_TASK: '8', SLURMD_NODENAME: 'cn7' }), {
    jobId: '12',
    task: 3,
    cpus: 8,
    slurmNode: 'cn7',
  });
  assert.equal(slurmTaskEnv({ SLURM_JOB_ID: '12', SLURM_PROCID: '0' }).cpus, 1, 'one CPU per task unless --cpus-per-task');
  assert.throws(() => slurmTaskEnv({}), /runs as a task of a Slurm job step/);
  assert.throws(() => slurmTaskEnv({ SLURM_JOB_ID: '12', SLURM_PROCID: '0', SLURM_CPUS_PER_TASK: 'x' }), /SLURM_CPUS_PER_TASK/);
});

test('ready files are written whole (mode 600) and a malformed one is a clear error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-ready-'));
  try {
    const ready = {
      version: 1 as const,
      jobId: '5',
      task: 2,
      host: '10.1.0.7',
      port: 9701,
      name: 'cn7-2',
      cpus: 4,
      slurmNode: 'cn7',
      pid: 42,
    };
    const file = writeReadyFile(dir, ready);
    assert.equal(file, join(dir, readyFileName(2)));
    assert.deepEqual(readReadyFile(file), ready);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir), ['ready-2.json'], 'no temporary file is left');
    writeFileSync(join(dir, 'ready-3.json'), '{"version":1,');
    assert.throws(() => readReadyFile(join(dir, 'ready-3.json')), { code: 'DISPY_ERR_BAD_REQUEST', message: /is not JSON/ });
    writeFileSync(join(dir, 'ready-4.json'), JSON.stringify({ ...ready, port: 0 }));
    assert.throws(() => readReadyFile(join(dir, 'ready-4.json')), { code: 'DISPY_ERR_BAD_REQUEST', message: /is malformed/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('dispyts slurm-node: a node with the task CPUs at its task address, a ready file for the client, and its files removed at exit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-slurm-node-'));
  const secretFile = join(dir, 'secret');
  writeFileSync(secretFile, `${TEST_SECRET}\n`, { mode: 0o600 });
  // What srun gives task 1 of job 4242 with --cpus-per-task=1.
  // A temporary directory of its own, so that other runs on the machine cannot confuse the count below.
  const tmp = mkdtempSync(join(tmpdir(), 'dispyts-slurm-tmp-'));
  const env = {
    ...process.env,
    TMPDIR: tmp,
    SLURM_JOB_ID: '4242',
    SLURM_PROCID: '1',
    SLURM_CPUS_PER_TASK: '1',
    SLURMD_NODENAME: 'cn1',
  };
  const proc = spawn(
    process.execPath,
    [CLI, 'slurm-node', '--ready-dir', dir, '--host-from', 'loopback:68', '--', '--secret-file', secretFile, '--idle-exit', '30'],
    { env, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (log += d));
  const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
  try {
    const file = join(dir, readyFileName(1));
    await until(() => existsSync(file), 20_000, 'the ready file');
    const ready = readReadyFile(file);
    assert.deepEqual(
      { ...ready, port: 0, pid: 0 },
      { version: 1, jobId: '4242', task: 1, host: '127.0.0.69', port: 0, name: 'cn1-1', cpus: 1, slurmNode: 'cn1', pid: 0 },
    );
    assert.equal(ready.pid, proc.pid);
    const cluster = new JobCluster((x: number) => x + 1, { nodes: [{ host: ready.host, port: ready.port }], secret: TEST_SECRET });
    assert.equal(await cluster.submit(41).wait(), 42);
    await cluster.close();
    const prefixes = () => readdirSync(tmp).filter((d) => d.startsWith('dispyts-slurm-4242-1-'));
    assert.equal(prefixes().length, 1, 'the node keeps its files in a directory of its own');
    proc.kill('SIGTERM');
    assert.equal(await within(exited, 15_000, 'the node to stop'), 0, log);
    assert.deepEqual(prefixes(), [], 'and removes it when it exits');
  } finally {
    if (proc.exitCode === null) proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  }

  const outside = await runCli(['slurm-node', '--ready-dir', dir, '--host-from', 'loopback:68']);
  assert.equal(outside.code, 2);
  assert.match(outside.err, /DISPY_ERR_INVALID_OPTION: dispyts slurm-node runs as a task of a Slurm job step/);
  const chosen = await runCli(['slurm-node', '--ready-dir', dir, '--', '--host', '127.0.0.69']);
  assert.match(chosen.err, /--host is chosen by dispyts slurm-node/);
  assert.match((await runCli(['slurm-node', '--host-from', 'loopback:68'])).err, /--ready-dir DIR is required/);
});

test('slurmNodes refuses bad options before running any Slurm command, and says when sbatch is missing', async () => {
  const sharedDir = mkdtempSync(join(tmpdir(), 'dispyts-slurm-shared-'));
  const command = [process.execPath, CLI];
  try {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{}, /`nodes` to be an integer >= 1/],
      [{ nodes: 0 }, /`nodes` to be an integer >= 1/],
      [{ nodes: 2, cpusPerNode: 1.5 }, /`cpusPerNode`/],
      [{ nodes: 2, nodesPerHost: 2 }, /needs a distinct address per node \(host: 'loopback:N'\)/],
      [{ nodes: 1, host: 'eth0' }, /'hostname', 'interface:NAME' or 'loopback:N'/],
      [{ nodes: 1, idleExit: 0 }, /`idleExit`.*frees an abandoned allocation/],
      [{ nodes: 1, time: '1 hour' }, /`time`/],
      [{ nodes: 1, partition: 'a b' }, /`partition`/],
      [{ nodes: 1, nodeArgs: ['--secret', 'x'] }, /--secret is set by slurmNodes/],
      [{ nodes: 1, secret: 'short' }, /`secret` to be a string of 16 or more/],
      [{ nodes: 1, secret: TEST_SECRET, secretFile: '/x' }, /secret or secretFile, not both/],
      [{ nodes: 1, sbatchArgs: '--mem=1G' }, /`sbatchArgs` to be an array of strings/],
      [{ nodes: 1, pollInterval: 0 }, /`pollInterval`/],
    ];
    for (const [options, message] of cases)
      await assert.rejects(slurmNodes({ sharedDir, command, ...options } as never), { code: 'DISPY_ERR_INVALID_OPTION', message });
    const loose = join(sharedDir, 'loose-secret');
    writeFileSync(loose, TEST_SECRET, { mode: 0o644 });
    await assert.rejects(slurmNodes({ nodes: 1, sharedDir, command, secretFile: loose }), { code: 'DISPY_ERR_SECRET_FILE' });
    // A valid request on a host without Slurm (PATH has no sbatch here).
    await assert.rejects(slurmNodes({ nodes: 1, sharedDir, command }), { code: 'DISPY_ERR_SLURM', message: /`sbatch` not found.*PATH/ });
    assert.deepEqual(readdirSync(sharedDir), ['loose-secret'], 'nothing is left of the attempts');
  } finally {
    rmSync(sharedDir, { recursive: true, force: true });
  }
});
