/**
 * Client heartbeats and results kept for absent clients, on loopback: an idle but live client
 * is never cut off (dispy B6); recoverJobs is refused while the computation's client is still
 * connected, and a bad recover file gets a clear error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, recoverJobs, type DispyError } from '../src/index.js';
import { ROOT, TEST_SECRET, startNode, clusterOn } from './helpers/daemon.js';
import { liveClient } from './netns/harness.js';

test('an idle client keeps its connection: heartbeats, not jobs, tell the node it is alive', async () => {
  const node = await startNode({ host: '127.0.0.200', cpus: 1 });
  // pulseInterval 0.2: heartbeats every 0.2 s; the node cuts off a client silent for 1 s.
  const cluster = new JobCluster((x: number) => x + 1, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
    pulseInterval: 0.2,
  });
  try {
    assert.equal(await cluster.submit(1).wait(), 2);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await cluster.submit(2).wait(), 3);
    assert.doesNotMatch(node.log(), /client sent no heartbeat/);
    assert.doesNotMatch(node.log(), /client gone/);
    // The node does watch this client's heartbeats (it would cut it off after 1 s of silence).
    assert.match(node.log(), /"every":0\.2,"msg":"client heartbeat interval"/);
  } finally {
    await cluster.close();
    await node.stop();
  }
});

test('recoverJobs is refused while the client of the computation is connected; a bad recover file is named', async () => {
  const node = await startNode({ host: '127.0.0.201', cpus: 1 });
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-recover-'));
  const recoverFile = join(dir, 'live.recover.json');
  const cfg = { ...clusterOn(node), recoverFile, waves: [{ jobs: 1, ms: 20_000 }] };
  const proc = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/netns/fixtures/fault-client.ts'), JSON.stringify(cfg)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const c = liveClient(proc, 60_000);
  try {
    await c.waitFor((l) => l.ev === 'running', 30_000, 'running');
    await assert.rejects(recoverJobs({ recoverFile, secret: TEST_SECRET }), (err: DispyError) => {
      assert.equal(err.code, 'DISPY_ERR_FORBIDDEN');
      assert.match(err.message, /still has its client connected/);
      return true;
    });
    writeFileSync(join(dir, 'bad.json'), '{"format":"something else"}');
    await assert.rejects(
      recoverJobs({ recoverFile: join(dir, 'bad.json') }),
      (err: DispyError) => err.code === 'DISPY_ERR_INVALID_OPTION' && /not a dispyts recover file/.test(err.message),
    );
    await assert.rejects(
      recoverJobs({ recoverFile: join(dir, 'missing.json') }),
      (err: DispyError) => err.code === 'DISPY_ERR_INVALID_OPTION' && /cannot read the recover file/.test(err.message),
    );
    // The client was not disturbed: its job still runs and the node still serves it.
    assert.equal(proc.exitCode, null);
    assert.match(node.log(), /serving a new client/);
  } finally {
    proc.kill('SIGKILL');
    await c.result;
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
