/** README's first command: `dispyts demo` runs a cluster on two local nodes and cleans up. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { CLI, alive, until } from './helpers/daemon.js';

test('dispyts demo --jobs 6 runs jobs on both nodes, prints the status table and stops its nodes', async () => {
  const proc = spawn(process.execPath, [CLI, 'demo', '--jobs', '6', '--job-seconds', '0.3', '--cpus', '1', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((r) => proc.once('exit', r));
  assert.equal(code, 0, `demo failed: ${err}`);
  const pids = [...out.matchAll(/node 127\.0\.0\.[23]:\d+ started \(pid (\d+)/g)].map((m) => Number(m[1]));
  assert.equal(pids.length, 2, out);
  const results = [...out.matchAll(/^job \d+ on (127\.0\.0\.[23]): compute\(C\(\d+, \d+\.\d{4}\), [\d.]+\) = [\d.]+$/gm)];
  assert.ok(results.length >= 6, out);
  assert.deepEqual(new Set(results.map((m) => m[1])), new Set(['127.0.0.2', '127.0.0.3']), 'both nodes ran jobs');
  assert.match(out, /Node \|\s+CPUs \|\s+Jobs \|/);
  assert.match(out, /127\.0\.0\.2 \(demo-2\)/);
  assert.match(out, /Total wall time: [\d.]+ sec, speedup/);
  for (const pid of pids) assert.equal(alive(pid), false, `node pid ${pid} stopped`);
});

test('dispyts demo stops cleanly on SIGINT', async () => {
  const proc = spawn(process.execPath, [CLI, 'demo', '--job-seconds', '5', '--cpus', '1', '--port', '0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await until(() => (out.match(/started \(pid/g) ?? []).length === 2 && /^monitor: /m.test(out), 30_000, 'the nodes and the monitor');
  try {
    // The monitor serves the running cluster.
    const url = /^monitor: (http:\/\/127\.0\.0\.1:\d+\/)/m.exec(out)?.[1];
    assert.ok(url, out);
    const status = await until(
      async () => {
        const list = (await (await fetch(`${url}cluster_status`)).json()) as {
          name: string;
          nodes: unknown[];
          jobs: { running: number };
        }[];
        return list[0]?.nodes.length === 2 && list[0].jobs.running > 0 ? list : null;
      },
      15_000,
      'the monitor to show two nodes running jobs',
    );
    assert.equal(status![0]!.name, 'demo');
  } finally {
    proc.kill('SIGINT');
  }
  const code = await new Promise<number | null>((r) => proc.once('exit', r));
  assert.equal(code, 0);
  assert.match(out, /stopping/);
  const pids = [...out.matchAll(/started \(pid (\d+)/g)].map((m) => Number(m[1]));
  for (const pid of pids) assert.equal(alive(pid), false);
});

test('dispyts --help lists the subcommands; bad options are clear errors', async () => {
  const run = (args: string[]) =>
    new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
      p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      p.once('exit', (code) => resolve({ code, out, err }));
    });
  const help = await run(['--help']);
  assert.equal(help.code, 0);
  assert.match(help.out, /node\s+run a compute node/);
  assert.match(help.out, /demo/);
  const nodeHelp = await run(['node', '--help']);
  assert.match(nodeHelp.out, /--zombie-interval/);
  const badCpus = await run(['node', '--cpus', '999', '--port', '0']);
  assert.equal(badCpus.code, 2);
  assert.match(badCpus.err, /DISPY_ERR_INVALID_OPTION: --cpus 999 is more than this machine's \d+ CPUs/);
  const insecure = await run(['node', '--host', '0.0.0.0', '--port', '0']);
  assert.equal(insecure.code, 2);
  assert.match(insecure.err, /DISPY_ERR_INSECURE/);
  const unknown = await run(['node', '--bogus']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /bogus/);
});
