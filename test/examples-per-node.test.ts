/**
 * The counterparts of dispy's replace_inmem.py, node_shvars.py and longrun.py in examples/, run
 * as a user runs them (`node --import tsx examples/<name>.ts`) with short jobs, each starting
 * its own two daemons on 127.0.0.84–89. The checks read what the example prints, which it
 * computes from the jobs' results (a file apart from examples.test.ts, which is long enough).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './helpers/daemon.js';

/** Runs an example to its end (killed after `timeoutMs`); asserts it exited 0 and returns its stdout lines. */
async function run(name: string, args: string[], timeoutMs = 90_000): Promise<string[]> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'examples', `${name}.ts`), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  clearTimeout(timer);
  assert.equal(code, 0, `examples/${name}.ts exited with ${code}\nstdout:\n${out}\nstderr:\n${err}`);
  return out.trimEnd().split('\n');
}

describe("dispy's in-memory and long-running examples", { concurrency: 3 }, () => {
  test("replace in-memory data: nodeSetup reads and deletes each node's file once; resetupNode replaces it; every digest matches", async () => {
    const lines = await run('replace-inmem', [
      '--hosts',
      '127.0.0.84,127.0.0.85',
      '--cpus',
      '2',
      '--jobs',
      '6',
      '--min-sec',
      '0.1',
      '--max-sec',
      '0.3',
    ]);
    const text = lines.join('\n');
    const files = lines
      .filter((l) => l.startsWith('Node '))
      .map((l) => /^Node (127\.0\.0\.8[45]) \(node-8[45]\) processes "(.+\.ts)"$/.exec(l));
    assert.equal(files.length, 4, `two nodes, then each again after resetupNode\n${text}`);
    for (const m of files) assert.ok(m, text);
    const jobs = lines.filter((l) => l.startsWith('job '));
    assert.equal(jobs.length, 12, text);
    for (const l of jobs)
      assert.match(
        l,
        /^job \d+ finished by 127\.0\.0\.8[45], (md5|sha\d+) of \S+\.ts is [0-9a-f]{16}\.\.\. \(matches the client's copy\)$/,
      );
    // After resetupNode the jobs digest the node's next file.
    const nextFiles = new Set(files.slice(2).map((m) => m![2]));
    for (const l of jobs.filter((j) => Number(/^job (\d+)/.exec(j)![1]) > 6)) {
      const f = / of (\S+) is /.exec(l)![1]!;
      assert.ok(nextFiles.has(f), `${f} is a file of the second round\n${text}`);
    }
    assert.ok(lines.includes('12 of 12 digests match'), text);
  });

  test('node shared variables: the jobs of each node update one variable under its lock, no update lost', async () => {
    const lines = await run('node-shvars', ['--hosts', '127.0.0.86,127.0.0.87', '--cpus', '2', '--jobs', '10']);
    const text = lines.join('\n');
    const summaries = lines.filter((l) => l.startsWith('node 127.0.0.8'));
    assert.ok(summaries.length >= 1, text);
    let jobs = 0;
    for (const l of summaries) {
      const m = /^node 127\.0\.0\.8[67]: (\d+) jobs, shvar ended at \d+: one chain from 1, no update lost$/.exec(l);
      assert.ok(m, text);
      jobs += Number(m[1]);
    }
    assert.equal(jobs, 10, text);
  });

  test('long-running jobs: a polite cancel lets each job hand in its best value (Finished)', async () => {
    const lines = await run('longrun', [
      '--hosts',
      '127.0.0.88,127.0.0.89',
      '--cpus',
      '2',
      '--run-sec',
      '1.5',
      '--step-sec',
      '0.05',
      '--update-sec',
      '0.3',
    ]);
    const text = lines.join('\n');
    const computed = lines.filter((l) => l.startsWith('job at '));
    assert.equal(computed.length, 4, text);
    const values = computed.map((l) => Number(/^job at 127\.0\.0\.8[89] computed (0\.\d+)$/.exec(l)?.[1] ?? Number.NaN));
    for (const v of values) assert.ok(v > 0 && v < 1, text);
    assert.ok(lines.includes(`best estimate: ${Math.max(...values)}`), text);
  });
});
