/**
 * The scheduler's state directory (`<prefix>/<host>`): a live scheduler there keeps a second
 * one from starting; files a dead one left are kept (with a warning) unless `--clean`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_SECRET, runCli, until } from './helpers/daemon.js';
import { CLUSTER_SECRET, startScheduler } from './helpers/scheduler.js';

const HOST = '127.0.0.253';

/** Runs a scheduler on HOST with `prefix`, expected to refuse to start. */
function refusedStart(prefix: string): Promise<{ code: number | null; err: string }> {
  return runCli([
    'scheduler',
    '--host',
    HOST,
    '--port',
    '0',
    '--cluster-secret',
    CLUSTER_SECRET,
    '--node-secret',
    TEST_SECRET,
    '--dest-path-prefix',
    prefix,
    '--parent-pid',
    String(process.pid),
  ]);
}

test("a live scheduler holds its directory; a dead one's files are kept with a warning, and --clean removes them", async () => {
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-sched-state-'));
  const state = join(prefix, HOST);
  try {
    const first = await startScheduler({ host: HOST, nodes: [], args: ['--dest-path-prefix', prefix] });
    const record = JSON.parse(readFileSync(join(state, 'scheduler.json'), 'utf8'));
    assert.equal(record.pid, first.pid);
    assert.equal(record.port, first.port);

    const second = await refusedStart(prefix);
    assert.notEqual(second.code, 0);
    assert.match(
      second.err,
      new RegExp(`another dispyts scheduler \\(pid ${first.pid}\\) uses ${state.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
    assert.ok((await first.stop('SIGKILL')) !== 0);

    // What the killed one left: its record and a computation's files.
    assert.ok(existsSync(join(state, 'scheduler.json')));
    const leftover = join(state, 'computations', 'left-by-the-dead-one');
    mkdirSync(leftover, { recursive: true });
    writeFileSync(join(leftover, 'data.csv'), '1,2,3\n');

    const keeper = await startScheduler({ host: HOST, nodes: [], args: ['--dest-path-prefix', prefix] });
    await until(
      () => /files of computations a previous scheduler left are kept; start with --clean/.test(keeper.log()),
      5_000,
      'the warning',
    );
    assert.equal(JSON.parse(readFileSync(join(state, 'scheduler.json'), 'utf8')).pid, keeper.pid);
    assert.equal(await keeper.stop(), 0);
    assert.ok(!existsSync(join(state, 'scheduler.json')), 'a clean stop removes the record');
    assert.ok(existsSync(join(leftover, 'data.csv')), 'kept without --clean');

    const cleaner = await startScheduler({ host: HOST, nodes: [], args: ['--dest-path-prefix', prefix, '--clean'] });
    assert.ok(!existsSync(leftover), '--clean removed them');
    assert.doesNotMatch(cleaner.log(), /previous scheduler left/);
    assert.equal(await cleaner.stop(), 0);
  } finally {
    rmSync(prefix, { recursive: true, force: true });
  }
});
