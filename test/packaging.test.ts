/**
 * The npm package as a user gets it: `npm pack` (whose prepack runs the full build) in a copy of
 * the sources, then the tarball installed into an empty folder with `npm install --offline`
 * (its dependencies come from the npm cache that `npm ci` filled), and from there
 * `npx dispyts --help`, `npx dispyts node` on 127.0.0.190, a client script that imports 'dispyts'
 * and runs a job on that node, and a TypeScript check of a client against the shipped types.
 * Also: what `npm pack` would put in the tarball from this working tree.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, TEST_SECRET } from './helpers/daemon.js';

const exec = promisify(execFile);
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPX = process.platform === 'win32' ? 'npx.cmd' : 'npx';
/** npm without the network: everything it needs must already be in its cache. */
const OFFLINE_ENV = {
  ...process.env,
  npm_config_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
};

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  dependencies: Record<string, string>;
};

/** What a packed file may be: built JS, its declarations, the built pages, and the three usual files. */
function allowed(path: string): boolean {
  if (['package.json', 'README.md', 'LICENSE'].includes(path)) return true;
  if (/^dist\/ui\/[^/]+\.(html|js|css|svg|png|woff2?)$/.test(path)) return true;
  return /^dist\/(?!ui\/).*\.(js|d\.ts)$/.test(path);
}

/** Members the published types must not show (the scheduler's back doors, link callbacks, job internals). */
const INTERNAL_NAMES =
  /\b(_fromWire|_submitEncoded|headOrder|dispatchOne|onJobMessage|onPulse|onComputationClosed|onLinkClosed|heartbeatInterval|PrebuiltComputation|EncodedSubmitOptions|_uid|_settled|_waiters|_errorCode|_attempt)\b|@internal/g;

/** Files every usable package must hold. */
const REQUIRED = [
  'package.json',
  'README.md',
  'LICENSE',
  'dist/index.js',
  'dist/index.d.ts',
  'dist/cli/main.js',
  'dist/node/runner-main.js',
  'dist/client/job-cluster.d.ts',
  'dist/httpd/dispy-http-server.d.ts',
  'dist/ui/monitor.html',
  'dist/ui/node.html',
  'dist/ui/manage.html',
];

function checkFileList(files: string[], where: string): void {
  const stray = files.filter((f) => !allowed(f));
  assert.deepEqual(stray, [], `${where}: files that do not belong in the package`);
  for (const f of REQUIRED) assert.ok(files.includes(f), `${where}: ${f} is missing`);
  assert.ok(
    files.some((f) => /^dist\/ui\/monitor-[A-Z0-9]+\.js$/.test(f)),
    `${where}: the Monitor page's script is missing`,
  );
  assert.ok(
    files.some((f) => /^dist\/ui\/[^/]+\.css$/.test(f)),
    `${where}: the pages' stylesheet is missing`,
  );
}

let work: string;
let node: ChildProcess | null = null;
before(() => {
  work = mkdtempSync(join(tmpdir(), 'dispyts-packaging-'));
});
after(async () => {
  if (node) {
    // npx does not pass SIGTERM on to the daemon: signal the whole process group it leads. The
    // child's 'close' comes once every process holding its output pipes is gone.
    const closed = new Promise((r) => node!.once('close', r));
    const group = (sig: NodeJS.Signals) => {
      try {
        process.kill(-node!.pid!, sig);
      } catch {
        // already gone
      }
    };
    group('SIGTERM');
    const timer = setTimeout(() => group('SIGKILL'), 10_000);
    await closed;
    clearTimeout(timer);
  }
  rmSync(work, { recursive: true, force: true });
});

test('the files field lets only built JS, types, the pages and README/LICENSE into the tarball', async () => {
  // What `npm pack` would take from this working tree as it is now (no build: --ignore-scripts).
  const { stdout } = await exec(NPM, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, env: OFFLINE_ENV });
  const [info] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  const files = info.files.map((f) => f.path);
  assert.deepEqual(
    files.filter((f) => !allowed(f)),
    [],
    'stray files',
  );
  assert.ok(!files.some((f) => /^(src|test|bench|examples|scripts|docs)\//.test(f) || f.endsWith('.map')));
});

test('npm pack builds a tarball that installs offline into an empty folder; its CLI, node and client work', {
  timeout: 120_000,
}, async () => {
  // A copy of what the build reads, so the build that prepack runs leaves this tree's dist/ alone.
  const stage = join(work, 'stage');
  mkdirSync(stage);
  for (const f of ['package.json', 'package-lock.json', 'README.md', 'LICENSE', 'tsconfig.json', 'tsconfig.build.json'])
    cpSync(join(ROOT, f), join(stage, f));
  for (const d of ['src', 'scripts']) cpSync(join(ROOT, d), join(stage, d), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(stage, 'node_modules'), 'dir');
  const packed = await exec(NPM, ['pack', '--json', '--pack-destination', work], {
    cwd: stage,
    env: OFFLINE_ENV,
    maxBuffer: 16 * 1024 * 1024,
  });
  // The build's output comes first; npm's JSON report is the rest, from a line holding only `[`.
  const [info] = JSON.parse(packed.stdout.slice(packed.stdout.search(/^\[$/m))) as [{ filename: string; files: { path: string }[] }];
  checkFileList(
    info.files.map((f) => f.path),
    'the packed tarball',
  );
  const tarball = join(work, info.filename);

  // An empty folder. Offline, npm cannot read the registry's package documents, only the
  // tarballs `npm ci` cached; a lockfile with our locked runtime dependencies lets it resolve
  // dispyts' dependency ranges from those (online, a plain `npm install <tarball>` does this).
  const app = join(work, 'app');
  mkdirSync(app);
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  const runtime = Object.fromEntries(Object.entries(lock.packages).filter(([k, v]) => k.startsWith('node_modules/') && !v.dev));
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'app', version: '1.0.0', private: true, type: 'module', dependencies: pkg.dependencies }, null, 2),
  );
  writeFileSync(
    join(app, 'package-lock.json'),
    JSON.stringify(
      {
        name: 'app',
        version: '1.0.0',
        lockfileVersion: 3,
        requires: true,
        packages: { '': { name: 'app', version: '1.0.0', dependencies: pkg.dependencies }, ...runtime },
      },
      null,
      2,
    ),
  );
  await exec(NPM, ['install', '--offline', '--no-audit', '--no-fund', tarball], {
    cwd: app,
    env: OFFLINE_ENV,
    maxBuffer: 16 * 1024 * 1024,
  });
  const installed = join(app, 'node_modules', 'dispyts');
  assert.equal(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).version, pkg.version);
  assert.ok(!readdirSync(installed).some((f) => ['src', 'test', 'bench', 'examples'].includes(f)));

  // The shipped declarations show users the API only: the scheduler's back doors and the link
  // callbacks are @internal and stripped (stripInternal in tsconfig.build.json).
  const declarations = readdirSync(join(installed, 'dist'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.d.ts'));
  assert.ok(declarations.length > 10, `only ${declarations.length} .d.ts files in the package`);
  const leaks: string[] = [];
  for (const f of declarations) {
    const text = readFileSync(join(installed, 'dist', f), 'utf8');
    for (const m of text.matchAll(INTERNAL_NAMES)) leaks.push(`${f}: ${m[0]}`);
  }
  assert.deepEqual(leaks, [], 'internal names in the packed .d.ts files');

  const help = await exec(NPX, ['--offline', 'dispyts', '--help'], { cwd: app, env: OFFLINE_ENV });
  assert.match(help.stdout, /^Usage: dispyts <command>/);
  assert.match(help.stdout, /\n {2}node {2,}/);
  assert.match(help.stdout, /\n {2}demo {2,}/);

  // The node daemon from the installed package, on an ephemeral port.
  const prefix = join(work, 'node-files');
  mkdirSync(prefix);
  node = spawn(
    NPX,
    [
      '--offline',
      'dispyts',
      'node',
      '--host',
      '127.0.0.190',
      '--port',
      '0',
      '--cpus',
      '1',
      '--secret',
      TEST_SECRET,
      '--dest-path-prefix',
      prefix,
      '--parent-pid',
      String(process.pid),
    ],
    {
      cwd: app,
      env: OFFLINE_ENV,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so after() can stop npx and the daemon together
    },
  );
  let nodeErr = '';
  node.stderr!.setEncoding('utf8').on('data', (d: string) => (nodeErr += d));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the packaged node was not ready in 30 s: ${nodeErr}`)), 30_000);
    node!.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /^dispyts node ready on 127\.0\.0\.190:(\d+) /m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    node!.once('exit', (code) => reject(new Error(`the packaged node exited with ${code}: ${nodeErr}`)));
  });

  // A client script of the user's, importing the package by name.
  writeFileSync(
    join(app, 'client.mjs'),
    `import { JobCluster, DispyJob } from 'dispyts';
class Point { constructor(x, y) { this.x = x; this.y = y; } norm() { return Math.hypot(this.x, this.y); } }
const cluster = new JobCluster((p, k) => ({ scaled: new Point(p.x * k, p.y * k), norm: p.norm(), pid: process.pid }), {
  depends: [Point], nodes: [{ host: '127.0.0.190', port: Number(process.argv[2]) }], secret: process.argv[3],
});
const job = cluster.submit(new Point(3, 4), 2);
const r = await job.wait();
console.log(JSON.stringify({ norm: r.norm, isPoint: r.scaled instanceof Point, scaledNorm: r.scaled.norm(), remote: r.pid !== process.pid, ip: job.ipAddr, finished: job.status === DispyJob.Finished }));
await cluster.close();
`,
  );
  const client = await exec(process.execPath, ['client.mjs', String(port), TEST_SECRET], { cwd: app, env: OFFLINE_ENV, timeout: 30_000 });
  assert.deepEqual(JSON.parse(client.stdout.trim()), {
    norm: 5,
    isPoint: true,
    scaledNorm: 10,
    remote: true,
    ip: '127.0.0.190',
    finished: true,
  });

  // The shipped declarations serve a TypeScript client (strict, NodeNext), with no dev-only types.
  writeFileSync(
    join(app, 'check.ts'),
    `import { DispyHTTPServer, JobCluster, type DispyJob, type JobClusterOptions } from 'dispyts';
const options: JobClusterOptions = { nodes: ['127.0.0.190'], pulseInterval: 2 };
const cluster = new JobCluster((x: number) => x * 2, options);
const job: DispyJob<number> = cluster.submit(21);
const n: number = await job.wait();
new DispyHTTPServer(cluster, { host: '127.0.0.1', port: 0 });
export { n };
`,
  );
  const tsc = join(ROOT, 'node_modules', '.bin', 'tsc');
  const checked = await exec(
    tsc,
    [
      '--noEmit',
      '--strict',
      '--skipLibCheck',
      'false',
      '--target',
      'es2022',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--typeRoots',
      join(ROOT, 'node_modules', '@types'),
      '--types',
      'node',
      'check.ts',
    ],
    { cwd: app },
  ).catch((e: { stdout: string; stderr: string }) => e);
  assert.equal(checked.stdout.trim() + checked.stderr.trim(), '', 'tsc found errors in a client of the packaged types');
});
