/**
 * The seed's example, ported (examples/httpd-example.ts), run short against test nodes and
 * driven through every endpoint with fetch while its jobs run; it ends on its own with `done`.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, TEST_SECRET, startNodes, until, type TestNode, within } from './helpers/daemon.js';
import { assertNode, assertShape, dispySample } from './helpers/httpd.js';

let nodes: TestNode[];
before(async () => {
  nodes = await startNodes(3, { first: 102, cpus: 2, logLevel: 'warn' });
});
after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
});

const formBody = (fields: Record<string, string | number | (string | number)[]>) => {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(fields)) for (const x of Array.isArray(v) ? v : [v]) p.append(k, String(x));
  return p;
};

test('the ported example runs short and is watched and steered through every endpoint', async () => {
  const [a, b, extra] = nodes as [TestNode, TestNode, TestNode];
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'examples', 'httpd-example.ts'),
      '--port',
      '0',
      '--host',
      '127.0.0.1',
      '--poll-sec',
      '1',
      '--jobs',
      '8',
      '--min-sec',
      '3',
      '--max-sec',
      '4',
      '--nodes',
      `${a.host}:${a.port},${b.host}:${b.port}`,
      '--secret',
      TEST_SECRET,
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  try {
    const base = (await until(() => /HTTP server at (\S+)/.exec(out)?.[1], 30_000, `the example's URL (stderr: ${err})`))!;
    const get = async (path: string) => {
      const r = await fetch(base + path);
      assert.ok(r.ok, `${path}: ${r.status}`);
      return r;
    };
    const postForm = async (path: string, fields: Record<string, string | number | (string | number)[]>) => {
      const r = await fetch(base + path, { method: 'POST', body: formBody(fields) });
      assert.ok(r.ok, `${path}: ${r.status} ${await r.clone().text()}`);
      return r.json() as Promise<any>;
    };
    await until(async () => ((await (await get('/cluster_status')).json()) as any)[0].jobs.running === 4, 15_000, '4 jobs running');

    const status = (await (await get('/cluster_status')).json()) as any;
    assertShape(status, dispySample('cluster_status'));
    assert.equal(status[0].name, 'compute');
    assert.equal(status[0].jobs.queued, 4);
    for (const n of status[0].nodes) assertNode(n);
    assertShape((await (await get('/nodes')).json()) as any, dispySample('nodes'));
    assertShape((await (await get('/cluster_updates')).json()) as any, dispySample('cluster_updates'));
    const delta = (await (await get('/cluster_updates?since=0')).json()) as any;
    assert.equal(delta.resync, true);
    assert.equal(((await (await get('/healthz')).json()) as any).status, 'ok');
    assert.match(await (await get('/')).text(), /<html/i);

    // SSE: the first event is a snapshot.
    const ac = new AbortController();
    const events = await fetch(`${base}/events?interval=0.2`, { signal: ac.signal });
    assert.match(events.headers.get('content-type') ?? '', /^text\/event-stream/);
    const reader = events.body!.getReader();
    let text = '';
    while (!text.includes('\n\n')) {
      const { value, done } = await within(reader.read(), 10_000, 'the first event');
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    assert.match(text, /"resync":true/);
    ac.abort();

    const info = await postForm('/node_info', { host: a.host });
    assertShape(info, dispySample('node_info'));
    const running = info.cluster_jobs.compute;
    assert.equal(running.length, 2);
    for (const j of running) assert.match(j.args, /^C\(\d, \d\.\d{4}\), \d+(\.\d)?$/, 'C.toString() and n');
    // Cancelled at once, while it surely still runs (jobs last 3 to 4 s).
    const victim = running[0];
    assert.deepEqual(await postForm('/cancel_jobs', { uid: victim.uid }), [victim.uid]);
    await until(() => out.includes(`job ${victim.job_id}: `), 10_000, 'the cancelled job reported');
    assert.match(out, new RegExp(`job ${victim.job_id}: .*terminated`, 'i'));

    assert.deepEqual(await postForm('/update', { timeout: 2, show_job_args: 'true' }), { timeout: 2, show_job_args: true });
    assert.deepEqual(await postForm('/set_cpus', { [a.host]: 1 }), { [a.host]: 1 });
    const added = await postForm('/add_node', { host: extra.host, port: extra.port, cpus: 1, cluster: 'compute', id: 1 });
    assert.equal(added.cpus_ignored, false);
    await until(
      async () =>
        ((await (await get('/cluster_status')).json()) as any)[0].nodes.some((n: any) => n.ip_addr === extra.host && n.status === 4),
      10_000,
      'extra node added',
    );
    assert.equal(await postForm('/deallocate_node', { cluster: 'compute', nodes: JSON.stringify([b.host]) }), 0);
    assert.equal(await postForm('/allocate_node', { cluster: 'compute', nodes: JSON.stringify([b.host]) }), 0);

    // The added node is closed again, for every cluster (jobs were all handed out before it came).
    assert.equal(await postForm('/close_node', { cluster: '*', nodes: JSON.stringify([extra.host]) }), 0);
    await until(
      async () => ((await (await get('/cluster_status')).json()) as any)[0].nodes.find((n: any) => n.ip_addr === extra.host).status === 16,
      5_000,
      'extra node closed',
    );

    assert.equal(await exited, 0, `example exit (stderr: ${err})`);
    assert.match(out, /\ndone\n$/);
    const results = out.split('\n').filter((l) => /^job \d+: /.test(l));
    assert.equal(results.length, 8);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  }
});
