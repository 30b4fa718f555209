/**
 * Files sent to nodes: file depends, NodeAllocate depends, sendFile, per-job files
 * (submitWith), destPath, cleanup, max file sizes, resume of a broken transfer, and names that
 * would leave the computation's directory (refused by the client and by the node).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DispyError, JobCluster, NodeAllocate, type DispyNode } from '../src/index.js';
import { transferFile, FILE_CHUNK, type Requester } from '../src/client/file-transfer.js';
import { CLIENT_ID } from '../src/client/node-link.js';
import { connectChannel, type Channel } from '../src/protocol/channel.js';
import { nodeMessageSchema, type ClientMessageInput, type NodeMessage, type Reply } from '../src/protocol/messages.js';
import { resolveSecret } from '../src/protocol/secret.js';
import { fromWire } from '../src/errors.js';
import { TEST_SECRET, startNode, until, type TestNode } from './helpers/daemon.js';

let node: TestNode;
let small: TestNode;
let dir: string;
before(async () => {
  [node, small] = await Promise.all([
    startNode({ host: '127.0.0.60', cpus: 2 }),
    startNode({ host: '127.0.0.61', cpus: 1, args: ['--max-file-size', '2k'] }),
  ]);
  dir = mkdtempSync(join(tmpdir(), 'dispyts-files-'));
});
after(async () => {
  await Promise.all([node.stop(), small.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, content: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

function opts(n: TestNode = node) {
  return { nodes: [{ host: n.host, port: n.port }], secret: TEST_SECRET };
}

/** Where a computation's files are on a test node. */
function compDir(n: TestNode, cluster: JobCluster): string {
  return join(realpathSync(n.prefix), n.host, cluster.computeId);
}

/** Resolves with the cluster's node once it is set up (rejects on the cluster's first error). */
function initialized(cluster: JobCluster): Promise<DispyNode> {
  return new Promise((resolve, reject) => {
    cluster.on('status', (e) => {
      if (e.status === 4 && e.node) resolve(e.node);
    });
    cluster.once('error', reject);
  });
}

/** Reads a file in the job's working directory (the computation's directory). */
function readInJobDir(name: string) {
  const fs = require('node:fs');
  return {
    text: fs.existsSync(name) ? fs.readFileSync(name, 'utf8') : null,
    cwd: process.cwd(),
    jobPath: (globalThis as Record<string, unknown>).dispyJobPath,
  };
}

/** A second connection of this client process to a node, to hand-craft requests. */
async function rawLink(
  n: TestNode,
): Promise<{ ch: Channel<NodeMessage, ClientMessageInput>; requester: Requester; closed: Promise<void> }> {
  const ch = await connectChannel<NodeMessage, ClientMessageInput>({
    host: n.host,
    port: n.port,
    secret: resolveSecret(TEST_SECRET),
    clientId: CLIENT_ID,
    schema: nodeMessageSchema,
  });
  let rid = 1_000_000;
  const waiting = new Map<number, (r: Reply) => void>();
  ch.on('message', (m) => {
    if (m.t === 'reply') waiting.get(m.rid)?.(m);
  });
  const closed = new Promise<void>((r) => ch.once('close', () => r()));
  const requester: Requester = {
    request: (msg) =>
      new Promise<Reply>((resolve, reject) => {
        const r = ++rid;
        waiting.set(r, (reply) => (reply.ok ? resolve(reply) : reject(fromWire(reply.error!))));
        ch.send({ ...msg, rid: r } as ClientMessageInput);
        void closed.then(() => reject(new DispyError('DISPY_ERR_CONNECTION', 'closed')));
      }),
  };
  return { ch, requester, closed };
}

test('file depends and NodeAllocate depends arrive before setup; jobs read them by name in their directory', async () => {
  const a = file('a.txt', 'alpha');
  const b = file('b.txt', 'beta');
  const cluster = new JobCluster(readInJobDir, {
    ...opts(),
    nodes: [new NodeAllocate(node.host, node.port, 0, { depends: [b] })],
    depends: [a, readInJobDir],
  });
  try {
    const ra = await cluster.submit('a.txt').wait();
    assert.equal(ra.text, 'alpha');
    assert.equal(ra.cwd, compDir(node, cluster));
    assert.equal(ra.jobPath, compDir(node, cluster));
    assert.equal((await cluster.submit('b.txt').wait()).text, 'beta');
    assert.ok(Math.abs(statSync(join(compDir(node, cluster), 'a.txt')).mtimeMs - statSync(a).mtimeMs) < 1, 'mtime kept');
  } finally {
    await cluster.close();
  }
  assert.equal(existsSync(compDir(node, cluster)), false, 'files removed at close');
  // Missing files are an error at construction.
  assert.throws(() => new JobCluster(readInJobDir, { ...opts(), depends: [join(dir, 'missing.txt')] }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: /no such file .*missing\.txt/,
  });
  assert.throws(() => new NodeAllocate(node.host, node.port, 0, { depends: [join(dir, 'missing.txt')] }), {
    code: 'DISPY_ERR_INVALID_OPTION',
    message: /missing\.txt/,
  });
});

test('sendFile to a node (DispyNode, IP or name); -1 for an unknown node or a missing file', async () => {
  const cluster = new JobCluster(readInJobDir, opts());
  try {
    const n = await initialized(cluster);
    assert.equal(await cluster.sendFile(file('sent.txt', 'sent!'), n), 0);
    assert.equal((await cluster.submit('sent.txt').wait()).text, 'sent!');
    assert.equal(await cluster.sendFile(file('sent2.txt', 'two'), node.host), 0);
    assert.equal((await cluster.submit('sent2.txt').wait()).text, 'two');
    assert.equal(await cluster.sendFile(file('sent3.txt', 'three'), n.name), 0);
    assert.equal(await cluster.sendFile(file('empty.txt', ''), n), 0);
    assert.equal((await cluster.submit('empty.txt').wait()).text, '');
    assert.equal(await cluster.sendFile(file('x.txt', 'x'), '127.0.0.99'), -1);
    assert.equal(await cluster.sendFile(join(dir, 'nope.txt'), n), -1);
  } finally {
    await cluster.close();
  }
  assert.equal(existsSync(compDir(node, cluster)), false);
});

test('names leaving the computation directory are refused by the client and by the node; nothing is written outside', async () => {
  const cluster = new JobCluster(readInJobDir, opts());
  const outside = mkdtempSync(join(tmpdir(), 'dispyts-outside-'));
  const raw = await rawLink(node);
  try {
    await initialized(cluster);
    const cdir = compDir(node, cluster);
    const src = file('payload.txt', 'evil');
    const begin = (name: string): ClientMessageInput => ({
      t: 'file-begin',
      rid: 1,
      computeId: cluster.computeId,
      name,
      size: 4,
      mtime: Date.now(),
      mode: 0o644,
    });

    // Client layer: transferFile refuses before sending anything.
    for (const name of ['../x', '/etc/x', 'a/../../x']) {
      await assert.rejects(transferFile(raw.requester, cluster.computeId, { path: src, name }, { destPath: null, maxFileSize: 0 }), {
        code: 'DISPY_ERR_FORBIDDEN',
      });
    }
    assert.throws(() => new JobCluster(readInJobDir, { ...opts(), destPath: '../up' }), { code: 'DISPY_ERR_INVALID_OPTION' });

    // Node layer, symlinks: a directory link and a file link pointing out are refused.
    symlinkSync(outside, join(cdir, 'out'));
    writeFileSync(join(outside, 'victim.txt'), 'intact');
    symlinkSync(join(outside, 'victim.txt'), join(cdir, 'victim.txt'));
    for (const name of ['out/x.txt', 'out/sub/x.txt', 'victim.txt']) {
      await assert.rejects(raw.requester.request({ ...begin(name) } as never), { code: 'DISPY_ERR_FORBIDDEN' }, name);
    }
    await assert.rejects(
      transferFile(raw.requester, cluster.computeId, { path: src, name: 'victim.txt' }, { destPath: null, maxFileSize: 0 }),
      { code: 'DISPY_ERR_FORBIDDEN' },
    );
    assert.deepEqual(readdirSync(outside), ['victim.txt']);
    assert.equal(readFileSync(join(outside, 'victim.txt'), 'utf8'), 'intact');

    // Node layer, hand-crafted names the schema refuses: the node drops that connection.
    raw.ch.send(begin('../escaped.txt'));
    await raw.closed;
    const raw2 = await rawLink(node);
    raw2.ch.send(begin('/tmp/escaped.txt'));
    await raw2.closed;
    await until(() => /invalid message/.test(node.log()), 5_000, 'the node to log the refusal');
    assert.equal(existsSync(join(node.prefix, node.host, 'escaped.txt')), false);
    assert.equal(existsSync(join(node.prefix, node.host, 'escaped.txt.part')), false);

    // The cluster's own connection is unaffected.
    assert.equal(await cluster.sendFile(file('fine.txt', 'fine'), node.host), 0);
    assert.equal((await cluster.submit('fine.txt').wait()).text, 'fine');
  } finally {
    raw.ch.close();
    await cluster.close();
    rmSync(outside, { recursive: true, force: true });
  }
});

test('a destPath that is a link out of the client area is refused at setup', async () => {
  const first = new JobCluster(readInJobDir, { ...opts(), destPath: 'probe' });
  const outside = mkdtempSync(join(tmpdir(), 'dispyts-outside-'));
  try {
    const r = await first.submit('nothing').wait();
    // <state dir>/@clients/<client address>/probe
    const clientArea = join(r.cwd as string, '..');
    symlinkSync(outside, join(clientArea, 'evil'));
    const bad = new JobCluster(readInJobDir, { ...opts(), destPath: 'evil/sub', depends: [file('d.txt', 'd')] });
    const err = await new Promise<DispyError>((resolve) => bad.once('error', resolve));
    assert.equal(err.code, 'DISPY_ERR_FORBIDDEN');
    assert.deepEqual(readdirSync(outside), []);
    await bad.close({ terminate: true });
  } finally {
    await first.close();
    rmSync(outside, { recursive: true, force: true });
  }
});

test('a broken transfer resumes: the node answers the offset it has, and only the rest is sent', async () => {
  const cluster = new JobCluster(readInJobDir, opts());
  try {
    const n = await initialized(cluster);
    const size = 3 * FILE_CHUNK + 12_345;
    const content = randomBytes(size);
    const big = file('big.bin', content);
    const st = statSync(big);
    const beginMsg = { t: 'file-begin' as const, computeId: cluster.computeId, name: 'big.bin', size, mtime: st.mtimeMs, mode: 0o644 };

    // By hand: begin, one chunk, then the connection is gone.
    const raw = await rawLink(node);
    assert.equal((await raw.requester.request(beginMsg)).offset, 0);
    const r1 = await raw.requester.request({
      t: 'file-chunk',
      computeId: cluster.computeId,
      name: 'big.bin',
      offset: 0,
      data: content.subarray(0, FILE_CHUNK),
    });
    assert.equal(r1.offset, FILE_CHUNK);
    raw.ch.close();
    await raw.closed;
    assert.equal(statSync(join(compDir(node, cluster), 'big.bin.part')).size, FILE_CHUNK, 'partial file kept as .part');
    assert.equal(existsSync(join(compDir(node, cluster), 'big.bin')), false);

    // Asked again, the node answers the offset it can resume from.
    const raw2 = await rawLink(node);
    assert.equal((await raw2.requester.request(beginMsg)).offset, FILE_CHUNK);
    raw2.ch.close();

    // A normal send completes it, sending only the remaining bytes.
    const tx0 = n.tx;
    assert.equal(await cluster.sendFile(big, n), 0);
    assert.equal(n.tx - tx0, size - FILE_CHUNK);
    const onNode = readFileSync(join(compDir(node, cluster), 'big.bin'));
    assert.equal(createHash('sha256').update(onNode).digest('hex'), createHash('sha256').update(content).digest('hex'));
    assert.equal(existsSync(join(compDir(node, cluster), 'big.bin.part')), false);
    assert.ok(Math.abs(statSync(join(compDir(node, cluster), 'big.bin')).mtimeMs - st.mtimeMs) < 1, 'mtime kept');

    // An identical file is not sent again.
    const tx1 = n.tx;
    assert.equal(await cluster.sendFile(big, n), 0);
    assert.equal(n.tx - tx1, 0);
  } finally {
    await cluster.close();
  }
});

test('maximum file size: the node refuses at file-begin, the client before sending', async () => {
  const big = file('big4k.bin', randomBytes(4096));
  const ok = file('ok.txt', 'small enough');
  // Node: --max-file-size 2k; the error names both sizes; the node is not used.
  const cluster = new JobCluster(readInJobDir, { ...opts(small), depends: [big] });
  const err = await new Promise<DispyError>((resolve) => cluster.once('error', resolve));
  assert.equal(err.code, 'DISPY_ERR_FILE_TOO_LARGE');
  assert.match(err.message, /4096 bytes.*--max-file-size of 2048 bytes/);
  assert.deepEqual(cluster.status().nodes, []);
  await cluster.close({ terminate: true });
  // sendFile and per-job files to that node: -1, and the job is Cancelled with the reason.
  const c2 = new JobCluster(readInJobDir, opts(small));
  try {
    const n = await initialized(c2);
    assert.equal(await c2.sendFile(big, n), -1);
    assert.equal(await c2.sendFile(ok, n), 0);
    const job = c2.submitWith({ depends: [big] }, 'big4k.bin');
    await assert.rejects(job.wait(), { code: 'DISPY_ERR_JOB_CANCELLED', message: /DISPY_ERR_FILE_TOO_LARGE/ });
    assert.equal((await c2.submit('ok.txt').wait()).text, 'small enough');
  } finally {
    await c2.close();
  }
  // Client: maxFileSize refuses before anything is sent.
  assert.throws(() => new JobCluster(readInJobDir, { ...opts(), depends: [big], maxFileSize: 1000 }), {
    code: 'DISPY_ERR_FILE_TOO_LARGE',
    message: /4096 bytes.*maxFileSize of 1000/,
  });
  const c3 = new JobCluster(readInJobDir, { ...opts(), maxFileSize: 1000 });
  try {
    const n = await initialized(c3);
    assert.equal(await c3.sendFile(big, n), -1);
    assert.throws(() => c3.submitWith({ depends: [big] }, 'big4k.bin'), { code: 'DISPY_ERR_FILE_TOO_LARGE' });
    assert.equal(existsSync(join(compDir(node, c3), 'big4k.bin.part')), false);
  } finally {
    await c3.close();
  }
});

test('per-job files (submitWith) are there for their job and deleted after it', async () => {
  const cluster = new JobCluster(readInJobDir, { ...opts(), depends: [file('common.txt', 'common')] });
  try {
    const n = await initialized(cluster);
    const jobs = [0, 1, 2].map((i) =>
      cluster.submitWith({ depends: [file(`in${i}.txt`, `input ${i}`)], id: `job-${i}`, node: n.ipAddr, maxRuntime: 30 }, `in${i}.txt`),
    );
    assert.deepEqual(
      jobs.map((j) => j.id),
      ['job-0', 'job-1', 'job-2'],
    );
    const results = await Promise.all(jobs.map((j) => j.wait()));
    assert.deepEqual(
      results.map((r) => r.text),
      ['input 0', 'input 1', 'input 2'],
    );
    for (const j of jobs) assert.equal(j.ipAddr, node.host);
    const cdir = compDir(node, cluster);
    await until(() => [0, 1, 2].every((i) => !existsSync(join(cdir, `in${i}.txt`))), 5_000, 'per-job files to be deleted');
    assert.equal((await cluster.submit('in0.txt').wait()).text, null, 'a later job does not see them');
    assert.equal((await cluster.submit('common.txt').wait()).text, 'common', 'computation files stay');
    assert.throws(() => cluster.submitWith({ depends: [join(dir, 'absent.txt')] }, 'x'), { code: 'DISPY_ERR_INVALID_OPTION' });
    assert.throws(() => cluster.submitWith({ node: '127.0.0.98' }, 'x'), { code: 'DISPY_ERR_NODE_UNKNOWN' });
  } finally {
    await cluster.close();
  }
});

test('files are deleted at close, kept with cleanup: false', async () => {
  const keep = new JobCluster(readInJobDir, { ...opts(), depends: [file('kept.txt', 'kept')], cleanup: false });
  assert.equal((await keep.submit('kept.txt').wait()).text, 'kept');
  const kdir = compDir(node, keep);
  await keep.close();
  assert.equal(readFileSync(join(kdir, 'kept.txt'), 'utf8'), 'kept');
  rmSync(kdir, { recursive: true, force: true });

  const gone = new JobCluster(readInJobDir, { ...opts(), depends: [file('gone.txt', 'gone')] });
  assert.equal((await gone.submit('gone.txt').wait()).text, 'gone');
  const gdir = compDir(node, gone);
  assert.equal(existsSync(join(gdir, 'gone.txt')), true);
  await gone.close();
  assert.equal(existsSync(gdir), false);
});

test('destPath: files go to the client area on the node, shared by clusters with the same destPath', async () => {
  const shared = file('shared.txt', 'shared data');
  const a = new JobCluster(readInJobDir, { ...opts(), destPath: '/proj/data', depends: [shared] });
  let b: JobCluster<typeof readInJobDir> | null = null;
  let where = '';
  try {
    const ra = await a.submit('shared.txt').wait();
    assert.equal(ra.text, 'shared data');
    where = ra.cwd as string;
    assert.match(where, new RegExp(`^${join(realpathSync(node.prefix), node.host, '@clients')}/[^/]+/proj/data$`));
    assert.equal(ra.jobPath, where);
    b = new JobCluster(readInJobDir, { ...opts(), destPath: 'proj/data', depends: [shared] });
    const nb = await initialized(b);
    assert.equal(nb.tx, 0, 'the identical file was not sent again');
    const rb = await b.submit('shared.txt').wait();
    assert.equal(rb.cwd, where);
    assert.equal(rb.text, 'shared data');
    await a.close();
    assert.equal(readFileSync(join(where, 'shared.txt'), 'utf8'), 'shared data', 'still used by the other cluster');
  } finally {
    await a.close();
    await b?.close();
  }
  assert.equal(existsSync(join(where, 'shared.txt')), false, 'deleted when the last cluster using it closed');
});

test('file store: resume after a daemon restart only from a part of the same file; bad chunks refused; per-job files counted', async () => {
  const { FileStore } = await import('../src/host/file-store.js');
  const { default: pino } = await import('pino');
  const state = mkdtempSync(join(tmpdir(), 'dispyts-store-'));
  const log = pino({ level: 'silent' });
  try {
    const data = randomBytes(3000);
    const begin = {
      t: 'file-begin' as const,
      rid: 1,
      computeId: 'c1',
      name: 'sub/f.bin',
      size: 3000,
      mtime: 1_700_000_000_123,
      mode: 0o640,
      destPath: null,
    };
    const chunk = (offset: number, end: number) => ({
      t: 'file-chunk' as const,
      rid: 2,
      computeId: 'c1',
      name: 'sub/f.bin',
      offset,
      data: data.subarray(offset, end),
    });
    const s1 = new FileStore(state, 0, log);
    assert.equal(await s1.begin('client', '127.0.0.1', begin), 0);
    assert.equal(await s1.chunk('client', chunk(0, 1000)), 1000);
    await assert.rejects(s1.chunk('client', chunk(2000, 2500)), { code: 'DISPY_ERR_BAD_REQUEST', message: /node has 1000 bytes/ });
    await assert.rejects(s1.chunk('client', { ...chunk(1000, 2000), data: randomBytes(2500) }), {
      code: 'DISPY_ERR_BAD_REQUEST',
      message: /beyond its size/,
    });
    // A new daemon finds the part: same file (size and mtime) resumes, another one starts over.
    const s2 = new FileStore(state, 0, log);
    assert.equal(await s2.begin('client', '127.0.0.1', begin), 1000);
    assert.equal(await s2.chunk('client', chunk(1000, 3000)), 3000);
    const f = join(realpathSync(state), 'c1', 'sub', 'f.bin');
    assert.deepEqual(readFileSync(f), data);
    assert.equal(statSync(f).mode & 0o777, 0o640);
    const s3 = new FileStore(state, 0, log);
    assert.equal(await s3.begin('client', '127.0.0.1', begin), 3000, 'identical file: nothing to send');
    writeFileSync(`${f}.part`, data.subarray(0, 500));
    assert.equal(
      await s3.begin('client', '127.0.0.1', { ...begin, mtime: begin.mtime + 5000 }),
      0,
      'a part of another version is not resumed',
    );
    // Per-job files: deleted when the last job using the name ended.
    const job = (uid: number) => s3.begin('client', '127.0.0.1', { ...begin, name: 'job.txt', size: 0, job: uid });
    assert.equal(await job(1), 0);
    assert.equal(await job(2), 0);
    const jf = join(realpathSync(state), 'c1', 'job.txt');
    s3.jobEnded('client', 'c1', 1, ['job.txt']);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(existsSync(jf), true, 'still used by job 2');
    s3.jobEnded('client', 'c1', 2, ['job.txt']);
    await until(() => !existsSync(jf), 2_000, 'per-job file deleted');
    // Too large for the node.
    const small = new FileStore(state, 100, log);
    await assert.rejects(small.begin('client', '127.0.0.1', { ...begin, computeId: 'c2' }), {
      code: 'DISPY_ERR_FILE_TOO_LARGE',
      message: /3000 bytes.*100 bytes/,
    });
    s3.close('client', 'c1');
    assert.equal(existsSync(join(state, 'c1')), false);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
});
