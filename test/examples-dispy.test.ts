/**
 * The counterparts of dispy's delegate.py, node_update.py, job_scheduler.py and sshportfw.py in
 * examples/, run as a user runs them with short jobs; each starts its own daemons on
 * 127.0.0.134–139 and 144–147 (the ssh-tunnel example's relays on 146–147). The checks read what
 * the example prints, computed from the jobs' results.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { until } from './helpers/daemon.js';
import { runExample, startExample } from './helpers/example-run.js';

describe("dispy's programs", { concurrency: 2 }, () => {
  test("delegate: each job brings the function it runs (dispy's delegate.py)", async () => {
    const lines = await runExample('delegate', [
      '--hosts',
      '127.0.0.134,127.0.0.135',
      '--cpus',
      '1',
      '--jobs',
      '4',
      '--min-sec',
      '0.1',
      '--max-sec',
      '0.3',
    ]);
    const jobs = lines.filter((l) => l.includes(' executed job '));
    assert.equal(jobs.length, 4, lines.join('\n'));
    for (const [i, l] of jobs.entries())
      assert.match(l, new RegExp(`^node-13[45]: func${1 + (i % 2)} executed job ${i} at \\d{4}-\\d\\d-\\d\\dT\\S+Z with 0\\.[123]\\d*$`));
    assert.ok(lines.includes('Jobs pending: 0'));
  });

  test("node update: a script once per node, not per CPU, run with Node.js (dispy's node_update.py)", async () => {
    const lines = await runExample('node-update', [
      '--hosts',
      '127.0.0.136,127.0.0.137',
      '--cpus',
      '2',
      '--min-sec',
      '0.1',
      '--max-sec',
      '0.2',
    ]);
    const text = lines.join('\n');
    for (const ip of ['127.0.0.136', '127.0.0.137']) {
      assert.match(text, new RegExp(`^Node ${ip.replaceAll('.', '\\.')} with 2 CPUs available$`, 'm'));
      assert.equal(
        lines.filter(
          (l) => l.startsWith(`Node ${ip} finished with `) && !Number.isNaN(Date.parse(l.slice(`Node ${ip} finished with `.length))),
        ).length,
        1,
        text,
      );
      assert.match(
        text,
        new RegExp(`^\\s+${ip.replaceAll('.', '\\.')} \\(node-13[67]\\) \\|\\s+2 \\|\\s+1 \\|`, 'm'),
        'one job on the node',
      );
    }
  });

  test("job scheduler: the status callback gives each node one file at a time until stdin says quit (dispy's job_scheduler.py)", async () => {
    const r = startExample('job-scheduler', [
      '--hosts',
      '127.0.0.138,127.0.0.139',
      '--cpus',
      '2',
      '--files',
      '5',
      '--job-sec',
      '0.2',
      '--size',
      '10000',
    ]);
    try {
      await until(
        () =>
          r
            .out()
            .split('\n')
            .filter((l) => l.startsWith('sha1sum for ')).length === 5,
        60_000,
        `5 digests (stderr: ${r.err()})`,
      );
      r.write('quit\n');
      assert.equal(await r.exited, 0, `stderr: ${r.err()}`);
      const lines = r.out().trimEnd().split('\n');
      const sums = lines.filter((l) => l.startsWith('sha1sum for '));
      assert.deepEqual(sums.map((l) => /^sha1sum for (data00\d): [0-9a-f]{40} \(matches\)$/.exec(l)?.[1]).sort(), [
        'data000',
        'data001',
        'data002',
        'data003',
        'data004',
      ]);
      assert.ok(lines.includes('5 files hashed, at most 1 job at a time on a node (0 running)'), lines.join('\n'));
    } finally {
      r.kill();
      await r.exited;
    }
  });

  test("ssh tunnel: nodes reached through relays, one loopback address per tunnel (dispy's sshportfw.py)", async () => {
    const lines = await runExample('ssh-tunnel', [
      '--hosts',
      '127.0.0.144,127.0.0.145',
      '--tunnels',
      '127.0.0.146,127.0.0.147',
      '--cpus',
      '1',
      '--jobs',
      '4',
      '--job-sec',
      '0.1',
    ]);
    assert.deepEqual(lines.slice(0, 3), [
      'tunnel 127.0.0.146 -> node 127.0.0.144',
      'tunnel 127.0.0.147 -> node 127.0.0.145',
      'one address for every tunnel: DISPY_ERR_INVALID_OPTION',
    ]);
    const results = lines.slice(3);
    assert.equal(results.length, 4, lines.join('\n'));
    for (const [i, l] of results.entries()) assert.match(l, new RegExp(`^result: ${[0.1, 0.2, 0.3, 0.4][i]} from 127\\.0\\.0\\.14[67]$`));
  });
});
