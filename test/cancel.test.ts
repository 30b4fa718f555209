/** Cancelling jobs: queued ones end Cancelled, running ones are killed with their process group. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, DispyJob } from '../src/index.js';
import { alive, startNode, until, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
let dir: string;
before(async () => {
  node = await startNode({ host: '127.0.0.21', cpus: 1 });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-cancel-'));
});
after(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts a child `sleep`, writes "jobPid childPid" to `file`, then waits forever. */
async function hang(file: string) {
  const { spawn } = require('node:child_process');
  const { writeFileSync } = require('node:fs');
  const child = spawn('sleep', ['300'], { stdio: 'ignore' });
  writeFileSync(file, `${process.pid} ${child.pid}`);
  await new Promise(() => undefined);
}

test('cancel a queued job, then a running one: its process and its child are gone', async () => {
  const cluster = new JobCluster(hang, clusterOn(node));
  const file = join(dir, 'pids');
  const running = cluster.submit(file);
  const queued = cluster.submit(join(dir, 'never'));
  await until(() => existsSync(file) && readFileSync(file, 'utf8').includes(' '), 10_000, 'job pids');
  const [jobPid, childPid] = readFileSync(file, 'utf8').split(' ').map(Number) as [number, number];
  assert.ok(alive(jobPid) && alive(childPid));
  // The job may write its file before the client has heard that it started.
  await until(() => running.status === DispyJob.Running, 10_000, 'Running in the client');

  assert.equal(await cluster.cancel(queued), 0);
  await assert.rejects(queued.wait(), { code: 'DISPY_ERR_JOB_CANCELLED' });
  assert.equal(queued.status, DispyJob.Cancelled);
  assert.equal(queued.startTime, null);

  assert.equal(await cluster.cancel(running), 0);
  await assert.rejects(running.wait(), { code: 'DISPY_ERR_JOB_TERMINATED' });
  assert.equal(running.status, DispyJob.Terminated);
  assert.match(running.exception!, /terminated on request/);
  await until(() => !alive(jobPid) && !alive(childPid), 5_000, 'job process and its child to exit');
  assert.equal(existsSync(join(dir, 'never')), false, 'the cancelled queued job never ran');

  assert.equal(await cluster.cancel(running), -1, 'a settled job cannot be cancelled again');
  // The node keeps working after the kill (its runner was replaced).
  const after = new JobCluster((x: number) => x + 1, clusterOn(node));
  assert.equal(await after.submit(1).wait(), 2);
  await after.close();
  await cluster.close();
});
