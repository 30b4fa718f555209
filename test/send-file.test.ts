/**
 * dispySendFile(path) inside a job: the file comes home in chunks into the cluster's resultsDir,
 * by base name, before the job's final status, and is listed in `job.files`; maxFileSize bounds
 * it; a node that names anything but a base name (`../x`, an absolute path, NUL, an empty name)
 * is refused and nothing is written outside resultsDir; a transfer broken off resumes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { DispyJob, JobCluster, SharedJobCluster } from '../src/index.js';
import { ResultFiles } from '../src/client/result-files.js';
import { TEST_SECRET, startNode, type TestNode } from './helpers/daemon.js';
import { CLUSTER_SECRET, startScheduler, type TestScheduler } from './helpers/scheduler.js';

declare function dispySendFile(path: string): Promise<void>;
declare const dispyNodeName: string;

let node: TestNode;
let sched: TestScheduler;
let dir: string;
before(async () => {
  // A small message size: a 1 MB file travels in several chunks.
  node = await startNode({ host: '127.0.0.83', cpus: 1, logLevel: 'warn', args: ['--max-message-size', '300k'] });
  sched = await startScheduler({ host: '127.0.0.84', nodes: [`${node.host}:${node.port}`], logLevel: 'warn' });
  dir = mkdtempSync(join(tmpdir(), 'dispyts-send-file-'));
});
after(async () => {
  await sched?.stop();
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

test('a job sends files home: written under resultsDir by base name, listed in job.files before its final status', async () => {
  const resultsDir = join(dir, 'results');
  mkdirSync(resultsDir);
  async function compute(seed: string, bytes: number): Promise<string> {
    const { createHash } = require('node:crypto') as typeof import('node:crypto');
    const { mkdirSync, writeFileSync } = require('node:fs') as typeof import('node:fs');
    mkdirSync('out', { recursive: true });
    const data = Buffer.alloc(bytes);
    for (let i = 0; i < bytes; i++) data[i] = (i * 31 + seed.length) & 0xff;
    writeFileSync(`out/big-${seed}.bin`, data);
    writeFileSync(`small-${seed}.txt`, `hello from ${dispyNodeName}`);
    await dispySendFile(`out/big-${seed}.bin`);
    void dispySendFile(`small-${seed}.txt`); // not awaited: still home before the job's status
    return createHash('sha256').update(data).digest('hex');
  }
  const seen: string[][] = [];
  const cluster = new JobCluster(compute, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
    resultsDir,
    jobStatus: (job) => {
      if (job.status === DispyJob.Finished) seen.push(job.files.map((f) => `${f}:${existsSync(f)}`));
    },
  });
  try {
    const job = cluster.submit('a', 1_000_000);
    const digest = await job.wait();
    assert.deepEqual(job.files.sort(), [join(resultsDir, 'big-a.bin'), join(resultsDir, 'small-a.txt')]);
    assert.equal(sha(readFileSync(join(resultsDir, 'big-a.bin'))), digest);
    assert.match(readFileSync(join(resultsDir, 'small-a.txt'), 'utf8'), /^hello from \S+$/);
    await cluster.wait();
    assert.deepEqual(seen, [[`${join(resultsDir, 'big-a.bin')}:true`, `${join(resultsDir, 'small-a.txt')}:true`]]);
    assert.deepEqual(readdirSync(resultsDir).sort(), ['big-a.bin', 'small-a.txt'], 'no part file left');
  } finally {
    await cluster.close();
  }
});

test('maxFileSize bounds a file sent home: dispySendFile rejects, nothing is written', async () => {
  const resultsDir = join(dir, 'bounded');
  mkdirSync(resultsDir);
  async function compute(): Promise<string> {
    (require('node:fs') as typeof import('node:fs')).writeFileSync('large.bin', Buffer.alloc(5000));
    try {
      await dispySendFile('large.bin');
      return 'sent';
    } catch (err) {
      return `${(err as { code?: string }).code}: ${(err as Error).message}`;
    }
  }
  const cluster = new JobCluster(compute, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
    resultsDir,
    maxFileSize: 4096,
    logLevel: 'error',
  });
  try {
    const job = cluster.submit();
    assert.match(
      await job.wait(),
      /^DISPY_ERR_FILE_TOO_LARGE: dispySendFile: file large\.bin is 5000 bytes, more than the cluster's maxFileSize of 4096 bytes$/,
    );
    assert.deepEqual(job.files, []);
    assert.deepEqual(readdirSync(resultsDir), []);
  } finally {
    await cluster.close();
  }
});

test('a node that names anything but a base name is refused, and nothing is written outside resultsDir', async () => {
  const outer = join(dir, 'outer');
  const resultsDir = join(outer, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const tag = randomBytes(4).toString('hex');
  const names = [`../escape-${tag}`, join(outer, `abs-${tag}`), `sub/x-${tag}`, `nul-${tag}\0`, '', '.', '..', `..\\win-${tag}`];
  // A job that speaks for its node: it forges the runner's messages to the daemon (which
  // relays names as given) and collects the client's answers.
  async function hostile(list: string[]): Promise<string[]> {
    const uid = Number(/\/j(\d+)$/.exec(process.env.DISPYTS_TAG ?? '')?.[1]);
    const answers = new Map<number, string>();
    const got = new Promise<void>((resolve) => {
      process.on('message', (m: { cmd?: number; fid?: number; error?: { code: string } | null; offset?: number }) => {
        if (m.cmd === 6 && m.fid! >= 9000) {
          answers.set(m.fid!, m.error ? m.error.code : `accepted at ${m.offset}`);
          if (answers.size === list.length * 2) resolve();
        }
      });
    });
    list.forEach((name, i) => {
      const head = { ev: 10, uid, name, size: 3, mtime: 0 };
      process.send!({
        ev: 2,
        items: [
          { ...head, fid: 9000 + 2 * i },
          { ...head, fid: 9001 + 2 * i, offset: 0, data: Buffer.from('bad').toString('base64') },
        ],
      });
    });
    await got;
    return [...answers.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
  }
  const cluster = new JobCluster(hostile, {
    nodes: [{ host: node.host, port: node.port }],
    secret: TEST_SECRET,
    resultsDir,
    logLevel: 'error',
  });
  try {
    const job = cluster.submit(names);
    const answers = await job.wait();
    // Every begin and every chunk refused.
    assert.equal(answers.length, names.length * 2);
    for (const [i, a] of answers.entries()) assert.equal(a, 'DISPY_ERR_FORBIDDEN', `${JSON.stringify(names[i >> 1])}: ${a}`);
    assert.deepEqual(job.files, []);
    assert.deepEqual(readdirSync(resultsDir), []);
    assert.deepEqual(readdirSync(outer), ['results']);
    assert.equal(existsSync(join(dir, `escape-${tag}`)), false);
  } finally {
    await cluster.close();
  }
});

test('a transfer broken off resumes from what the client has; a complete identical file is not sent again', async () => {
  const resultsDir = join(dir, 'resume');
  mkdirSync(resultsDir);
  const files = new ResultFiles({ dir: resultsDir, maxFileSize: 0, log: pino({ level: 'silent' }) });
  const job = new DispyJob(1, 1, [], null);
  const data = randomBytes(3000);
  const head = { t: 'job-file' as const, uid: 7, name: 'r.bin', size: 3000, mtime: 1_700_000_000_000 };
  assert.deepEqual(await files.receive('n', job, { ...head, fid: 1 }), { offset: 0 });
  assert.deepEqual(await files.receive('n', job, { ...head, fid: 1, offset: 0, data: data.subarray(0, 1000) }), { offset: 1000 });
  // The node's connection broke; the job (or its re-run) sends it again from the start.
  assert.deepEqual(await files.receive('n', job, { ...head, fid: 2 }), { offset: 1000 });
  assert.deepEqual(await files.receive('n', job, { ...head, fid: 2, offset: 1000, data: data.subarray(1000) }), { offset: 3000 });
  assert.deepEqual(readFileSync(join(resultsDir, 'r.bin')), data);
  assert.deepEqual(job.files, [join(resultsDir, 'r.bin')]);
  assert.deepEqual(await files.receive('n', job, { ...head, fid: 3 }), { offset: 3000 }, 'already complete');
  writeFileSync(join(resultsDir, 'other'), 'x');
  assert.deepEqual(readdirSync(resultsDir).sort(), ['other', 'r.bin']);
});

test('through dispyts scheduler: the file reaches the program behind it, before the job ends', async () => {
  const resultsDir = join(dir, 'shared');
  mkdirSync(resultsDir);
  async function compute(n: number): Promise<number> {
    const { writeFileSync } = require('node:fs') as typeof import('node:fs');
    writeFileSync(`part-${n}.txt`, 'x'.repeat(200_000 + n));
    await dispySendFile(`part-${n}.txt`);
    return n;
  }
  const cluster = new SharedJobCluster(compute, {
    schedulerHost: sched.host,
    schedulerPort: sched.port,
    secret: CLUSTER_SECRET,
    host: '127.0.0.85',
    resultsDir,
  });
  try {
    const jobs = [1, 2].map((n) => cluster.submit(n));
    for (const [i, job] of jobs.entries()) {
      assert.equal(await job.wait(), i + 1);
      assert.deepEqual(job.files, [join(resultsDir, `part-${i + 1}.txt`)]);
      assert.equal(readFileSync(job.files[0]!, 'utf8'), 'x'.repeat(200_000 + i + 1));
    }
  } finally {
    await cluster.close();
  }
});
