/**
 * Every example in examples/ (but the seed's httpd example, which has its own test) run as a
 * user runs it, `node --import tsx examples/<name>.ts`, with short jobs: each starts its own
 * daemons on 127.0.0.170–181 and 186–188 (ephemeral ports, one CPU each where that does), or uses a test daemon on 127.0.0.182 through
 * `--nodes`/`--secret`. The checks read what the example prints, which it computes from the
 * jobs' results, so an example that stops working fails here.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { browserUnavailable, launchChromium } from './helpers/browser.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';
import { runExample as run, startExample as start } from './helpers/example-run.js';

describe('examples', { concurrency: 3 }, () => {
  let external: TestNode;
  before(async () => {
    external = await startNode({ host: '127.0.0.182', cpus: 1, name: 'node-182', logLevel: 'warn' });
  });
  after(async () => {
    await external?.stop();
  });

  test('sample: jobs report where they ran, in submission order, then the status table', async () => {
    const lines = await run('sample', [
      '--hosts',
      '127.0.0.170,127.0.0.171',
      '--cpus',
      '1',
      '--jobs',
      '6',
      '--min-sec',
      '0.1',
      '--max-sec',
      '0.3',
    ]);
    const jobs = lines.filter((l) => l.includes(' executed job '));
    assert.equal(jobs.length, 6, lines.join('\n'));
    for (const [i, l] of jobs.entries())
      assert.match(l, new RegExp(`^node-17[01] executed job ${i} at \\d{4}-\\d\\d-\\d\\dT\\S+Z with 0\\.[123]\\d*$`));
    assert.ok(
      lines.some((l) => /^\s+127\.0\.0\.170 \(node-170\) \|\s+1 \|/.test(l)),
      'node 170 in the status table',
    );
    assert.ok(
      lines.some((l) => /^\s+127\.0\.0\.171 \(node-171\) \|\s+1 \|/.test(l)),
      'node 171 in the status table',
    );
    const jobsInTable = lines.filter((l) => /^\s+127\.0\.0\.17[01] /.test(l)).reduce((n, l) => n + Number(l.split('|')[2]), 0);
    assert.equal(jobsInTable, 6);
    assert.ok(lines.includes('Jobs pending: 0'));
  });

  test('object instances (on running nodes, through --nodes and --secret): a C goes, a C with its Map and Dates comes back', async () => {
    const lines = await run('object-instances', [
      '--nodes',
      `${external.host}:${external.port}`,
      '--secret',
      TEST_SECRET,
      '--jobs',
      '4',
      '--max-sec',
      '0.2',
    ]);
    assert.equal(lines.length, 4, lines.join('\n'));
    lines.forEach((l, i) => {
      const m = new RegExp(
        `^job ${i}: stdout: ${i}: (\\d+\\.\\d\\d), result: ${i}: (\\d+\\.\\d\\d), a C: true, n x 10: true, visited node-182 at a Date: true$`,
      ).exec(l);
      assert.ok(m, l);
      assert.ok(Math.abs(Number(m[2]) - 10 * Number(m[1])) < 0.06, l);
    });
  });

  test('provisional results: reports arrive while jobs run; an acceptable one cancels every job still going', async () => {
    // Seed 6: job 0 draws 0.00234 in its second round; no other job goes below 0.01 in 60.
    const lines = await run('provisional-results', [
      '--hosts',
      '127.0.0.173',
      '--cpus',
      '2',
      '--seed',
      '6',
      '--rounds',
      '60',
      '--step-sec',
      '0.05',
      '--threshold',
      '0.1',
      '--accept',
      '0.01',
    ]);
    const text = lines.join('\n');
    assert.match(text, /^job 0 on 127\.0\.0\.173: round 1 drew 0\.00234$/m);
    assert.match(text, /^accepted 0\.00234 from job 0; cancelling the jobs still going$/m);
    const finals = lines.filter((l) => /^job \d: [A-Z]/.test(l));
    assert.equal(finals.length, 4, text);
    for (const l of finals) assert.match(l, /^job \d: (Terminated|Cancelled)/, 'no job ran its 60 rounds to the end');
    assert.match(text, /^job 0: Terminated: DispyError: job terminated/m);
  });

  test("node setup: per-node data files and setup arguments; every job digests its node's data", async () => {
    const lines = await run('node-setup', ['--hosts', '127.0.0.175,127.0.0.176', '--cpus', '1', '--size', '100000', '--jobs', '8']);
    const text = lines.join('\n');
    assert.match(text, /^node 127\.0\.0\.175 \(node-175, linux [^)]+\) offers 1 of its CPUs, \d+ MiB free; using 1$/m);
    assert.match(text, /^node 127\.0\.0\.176 \(node-176, linux [^)]+\) offers 1 of its CPUs, \d+ MiB free; using 1$/m);
    const jobs = lines.filter((l) => l.startsWith('job '));
    assert.equal(jobs.length, 8, text);
    const fileOf = new Map<string, string>();
    for (const l of jobs) {
      const m =
        /^job \d+ on (127\.0\.0\.17[56]): (md5|sha1|sha256|sha512) of (data-[01]\.bin) = [0-9a-f]{16}\.\.\. matches the client's copy$/.exec(
          l,
        );
      assert.ok(m, l);
      assert.equal(fileOf.get(m[1]!) ?? m[3], m[3], 'one data file per node');
      fileOf.set(m[1]!, m[3]!);
    }
    assert.ok(lines.includes('8 of 8 digests match'));
  });

  test('bounded submit: never more than --upper jobs pending, every result in', async () => {
    const lines = await run('bounded-submit', [
      '--hosts',
      '127.0.0.177',
      '--cpus',
      '2',
      '--jobs',
      '40',
      '--upper',
      '6',
      '--lower',
      '3',
      '--job-sec',
      '0.05',
    ]);
    assert.deepEqual(lines, ['40 jobs, at most 6 pending at once (upper bound 6, lower 3); 0 failed', 'sum of squares: 20540 (correct)']);
  });

  test('program: a shell script per job, its exit code as the result, its output captured', async () => {
    const lines = await run('program', ['--hosts', '127.0.0.178', '--cpus', '1', '--jobs', '4', '--sleep', '0.1']);
    const sums = [55, 210, 465, 820];
    sums.forEach((s, k) => {
      const n = 10 * (k + 1);
      assert.match(
        lines[k]!,
        new RegExp(
          `^job ${k + 1} on 127\\.0\\.0\\.178: exit code ${s % 7} \\(as expected\\); stdout: sum 1\\.\\.${n} = ${s} on \\S+; stderr: computed in /\\S+$`,
        ),
      );
    });
    assert.equal(lines[4], '4 of 4 exit codes as expected');
  });

  test('module computation: an npm import (zod) bundled and run on the node; a rejected input fails its job', async () => {
    const lines = await run('module-computation', ['--hosts', '127.0.0.179', '--cpus', '1']);
    assert.deepEqual(lines.slice(0, 3), [
      'order A-1 on 127.0.0.179: 3 items, total 4.50',
      'order A-2 on 127.0.0.179: 3 items, total 15.00',
      'order A-3 on 127.0.0.179: 10 items, total 9.90',
    ]);
    assert.match(lines[3]!, /^order A-4: DISPY_ERR_JOB_TERMINATED: ZodError/);
    assert.equal(lines.length, 4);
  });

  test('shared cluster: a dispyts scheduler shares two nodes between two SharedJobClusters', async () => {
    const lines = await run('shared-cluster', [
      '--hosts',
      '127.0.0.186,127.0.0.187',
      '--cpus',
      '1',
      '--scheduler-host',
      '127.0.0.188',
      '--jobs',
      '4',
      '--job-sec',
      '0.2',
    ]);
    const text = lines.join('\n');
    assert.match(lines[0]!, /^scheduler on 127\.0\.0\.188:\d+, policy fair, 2 nodes$/);
    const squares = lines.filter((l) => l.startsWith('squares job '));
    const words = lines.filter((l) => l.startsWith('words job '));
    assert.equal(squares.length, 4, text);
    assert.equal(words.length, 4, text);
    for (const [i, l] of squares.entries()) assert.match(l, new RegExp(`^squares job ${i}: ${i * i} on node-18[67]$`));
    for (const [i, l] of words.entries()) assert.match(l, new RegExp(`^words job ${i}: ${i}drow on node-18[67]$`));
    assert.equal(lines.at(-1), 'done: 8 jobs in 2 clusters');
  });

  test('two clusters on one HTTP server: both in the JSON API, and * Combined in the Monitor page', async () => {
    const r = start('two-clusters', [
      '--hosts',
      '127.0.0.180,127.0.0.181',
      '--cpus',
      '1',
      '--port',
      '0',
      '--poll-sec',
      '1',
      '--jobs',
      '4',
      '--job-sec',
      '0.3',
      '--linger',
      '30',
    ]);
    try {
      const base = await until(() => /HTTP server at (\S+)/.exec(r.out())?.[1], 60_000, `the example's URL (stderr: ${r.err()})`);
      await until(() => r.out().includes('\njobs done\n'), 60_000, 'the jobs to end');
      assert.match(r.out(), /^squares: 0 1 4 9$/m);
      assert.match(r.out(), /^words: 0-drow 1-drow 2-drow 3-drow$/m);
      const status = (await (await fetch(`${base}/cluster_status`)).json()) as {
        name: string;
        jobs: { done: number };
        nodes: { ip_addr: string }[];
      }[];
      assert.deepEqual(status.map((c) => c.name).sort(), ['squares', 'words']);
      for (const c of status) {
        assert.equal(c.jobs.done, 4, c.name);
        assert.deepEqual(c.nodes.map((n) => n.ip_addr).sort(), ['127.0.0.180', '127.0.0.181'], c.name);
      }
      const unavailable = browserUnavailable();
      if (unavailable) console.log(`# the Monitor part skipped: ${unavailable}`);
      else {
        const browser = await launchChromium();
        try {
          const page = await browser.newPage();
          await page.goto(`${base}/`);
          await until(async () => (await page.locator('#cluster option').count()) === 3, 15_000, 'three choices');
          assert.deepEqual(await page.locator('#cluster option').allTextContents(), ['* Combined', 'squares', 'words']);
          await until(
            async () => (await page.locator('[data-testid=jobs-done]').first().textContent())?.trim() === '8',
            15_000,
            '8 jobs done in * Combined',
          );
          const ips = await page.$$eval('table.nodes tr.row', (rows) => rows.map((row) => (row as HTMLElement).dataset.ip!).sort());
          assert.deepEqual(ips, ['127.0.0.180', '127.0.0.181']);
        } finally {
          await browser.close();
        }
      }
      r.write('\n');
      assert.equal(await r.exited, 0, `stderr: ${r.err()}`);
      assert.match(r.out(), /\ndone\n$/);
    } finally {
      r.kill();
      await r.exited;
    }
  });
});
