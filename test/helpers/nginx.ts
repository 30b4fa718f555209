/**
 * Debian's nginx, started by a test with a configuration of its own in a temporary prefix (pid
 * file, temp paths and logs inside it, `daemon off`, one process), listening only on the
 * 127.0.0.x addresses the test names, and stopped by PID. A system nginx service, if one runs,
 * is neither touched nor used. Also the README's nginx block, which the proxy test runs as is.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './daemon.js';
import { killOnExit } from './procs.js';

const CANDIDATES = ['/usr/sbin/nginx', '/usr/bin/nginx'];

/** The nginx binary, or null. */
export function nginxPath(): string | null {
  return CANDIDATES.find((p) => existsSync(p)) ?? null;
}

/** Why nginx tests cannot run here, or null when they can. */
export function nginxUnavailable(): string | null {
  return nginxPath() ? null : `nginx is not installed (${CANDIDATES.join(', ')}; .ci/run installs Debian's nginx package)`;
}

/** A free TCP port on `host` (bound and released: the caller binds it right away). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface TestNginx {
  pid: number;
  log(): string;
  stop(): Promise<void>;
}

/**
 * Starts nginx with `servers` (server blocks) inside its `http` block; resolves once every
 * `listen` address in `ready` accepts connections.
 */
export async function startNginx(servers: string, ready: { host: string; port: number }[]): Promise<TestNginx> {
  const bin = nginxPath();
  if (!bin) throw new Error(nginxUnavailable()!);
  const prefix = mkdtempSync(join(tmpdir(), 'dispyts-test-nginx-'));
  for (const d of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi', 'logs']) mkdirSync(join(prefix, d));
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${join(prefix, 'nginx.pid')};
error_log stderr info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${join(prefix, 'client_body')};
  proxy_temp_path ${join(prefix, 'proxy')};
  fastcgi_temp_path ${join(prefix, 'fastcgi')};
  uwsgi_temp_path ${join(prefix, 'uwsgi')};
  scgi_temp_path ${join(prefix, 'scgi')};
${servers}
}
`,
  );
  const proc = spawn(bin, ['-p', prefix, '-c', conf, '-e', 'stderr'], { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(proc);
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
  const exited = new Promise<void>((resolve) =>
    proc.once('exit', () => {
      rmSync(prefix, { recursive: true, force: true });
      resolve();
    }),
  );
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 15_000;
  for (const r of ready) {
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`nginx exited at start: ${out}`);
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect(r.port, r.host, () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
      });
      if (ok) break;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`nginx did not listen on ${r.host}:${r.port} in 15 s: ${out}`);
      }
      await new Promise((res) => setTimeout(res, 50));
    }
  }
  return { pid: proc.pid!, log: () => out, stop };
}

/** README's "Behind nginx or Caddy" nginx server block, as printed there. */
export function readmeNginxBlock(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf('### Behind nginx or Caddy');
  if (at < 0) throw new Error('README has no "Behind nginx or Caddy" section');
  const m = /```nginx\n([\s\S]*?)```/.exec(readme.slice(at));
  if (!m) throw new Error('README\'s "Behind nginx or Caddy" section has no ```nginx block');
  return m[1]!;
}

/** `text` with `pattern` replaced once; throws if it does not occur exactly once (the README changed). */
export function replaceOnce(text: string, pattern: RegExp, by: string): string {
  const n = text.match(new RegExp(pattern.source, `${pattern.flags.replace('g', '')}g`))?.length ?? 0;
  if (n !== 1) throw new Error(`expected ${pattern} once in the README's nginx block, found it ${n} times`);
  return text.replace(pattern, by);
}
