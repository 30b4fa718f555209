/**
 * A real Slurm for tests: slurmctld, slurmd and their own munged, started from Debian's packages
 * inside a network namespace made here with only `lo` up, so Slurm's fixed ports (6817, 6818)
 * and name lookups never meet the machine's. Every process runs through `nsenter` into that
 * namespace and `unshare` into a private mount and UTS namespace where the host name is
 * `localhost` and /etc/hosts, /etc/resolv.conf and /etc/nsswitch.conf are this sandbox's: names
 * resolve from the hosts file only (`localhost`), and a resolver query (Slurm's DNS SRV lookup
 * for a missing configuration) could only go to 127.0.0.1. Config, key, state, spool, sockets and
 * logs live in one temporary directory. The system's own munge and Slurm services are neither
 * used nor touched. `stop()` ends every process by pid and deletes the namespace; it also runs
 * when the test process exits or is signalled.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './daemon.js';

const SBIN = ['slurmctld', 'slurmd', 'munged'];
const BIN = ['sbatch', 'srun', 'squeue', 'scancel', 'sinfo', 'nsenter', 'unshare', 'ip'];

function which(cmd: string): string | undefined {
  for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin']) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return join(dir, cmd);
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Why the sandbox cannot run here, or undefined: Slurm, munge or util-linux missing (`.ci/run`
 * installs them), or the kernel refusing `ip netns add`.
 */
export function slurmUnavailable(): string | undefined {
  if (process.platform !== 'linux') return `Slurm tests need Linux (this is ${process.platform})`;
  const missing = [...SBIN, ...BIN].filter((c) => !which(c));
  if (missing.length)
    return `not installed: ${missing.join(', ')} (apt-get install --no-install-recommends slurmctld slurmd slurm-client munge)`;
  const probe = `dt${process.pid}-slurmprobe`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
  } catch (err) {
    return `cannot create network namespaces (ip netns add refused: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()})`;
  }
  try {
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'ignore', timeout: 10_000 });
  } catch {
    // best effort
  }
  return undefined;
}

function parentOf(pid: number): number | undefined {
  try {
    // Fields after the command name, which is in parentheses and may hold spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const live = new Set<SlurmSandbox>();
let hooked = false;
function hookProcess(): void {
  if (hooked) return;
  hooked = true;
  process.once('exit', () => {
    for (const s of live) s.stopSync();
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const s of live) s.stopSync();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15));
    });
  }
}

export class SlurmSandbox {
  readonly ns = `dt${process.pid}-slurm`;
  readonly dir: string;
  readonly conf: string;
  /** Where slurmNodes keeps its allocation directories (the "shared" directory). */
  readonly sharedDir: string;
  /** The sandbox's daemons: munged, slurmctld, slurmd. */
  readonly daemons = new Map<string, ChildProcess>();
  readonly #procs = new Set<ChildProcess>();
  #nsFile = '';

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'dispyts-slurm-'));
    // munged wants its socket's directory reachable by everyone (it is root's anyway).
    chmodSync(this.dir, 0o755);
    this.conf = join(this.dir, 'slurm.conf');
    this.sharedDir = join(this.dir, 'shared');
    mkdirSync(this.sharedDir, { mode: 0o700 });
    hookProcess();
    live.add(this);
  }

  /** The environment of every Slurm command and client here. */
  get env(): NodeJS.ProcessEnv {
    return { ...process.env, SLURM_CONF: this.conf };
  }

  /** Creates the namespace, writes the configuration and starts munged, slurmctld and slurmd. */
  async start(): Promise<void> {
    execFileSync('ip', ['netns', 'add', this.ns], { timeout: 10_000 });
    this.#nsFile = ['/run/netns', '/var/run/netns'].map((d) => join(d, this.ns)).find((f) => existsSync(f)) ?? '';
    if (!this.#nsFile) throw new Error(`ip netns add ${this.ns} made no /run/netns/${this.ns}`);
    execFileSync('ip', ['-n', this.ns, 'link', 'set', 'lo', 'up'], { timeout: 10_000 });
    // glibc's AI_ADDRCONFIG (Slurm resolves 127.0.0.1 with it) counts no address but 127.0.0.1
    // as "configured": a second loopback address makes numeric addresses resolve. Still only lo.
    execFileSync('ip', ['-n', this.ns, 'addr', 'add', '127.0.0.250/32', 'dev', 'lo'], { timeout: 10_000 });
    const etc = join(this.dir, 'etc');
    mkdirSync(etc);
    writeFileSync(join(etc, 'hosts'), '127.0.0.1 localhost\n::1 localhost\n');
    writeFileSync(join(etc, 'resolv.conf'), 'nameserver 127.0.0.1\n');
    writeFileSync(join(etc, 'nsswitch.conf'), 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n');
    writeFileSync(join(this.dir, 'munge.key'), randomBytes(1024), { mode: 0o400 });
    writeFileSync(join(this.dir, 'plugstack.conf'), '');
    mkdirSync(join(this.dir, 'state'));
    mkdirSync(join(this.dir, 'spool'));
    const d = this.dir;
    writeFileSync(
      this.conf,
      [
        'ClusterName=dispyts-test',
        'SlurmctldHost=localhost(127.0.0.1)',
        'SlurmctldPort=6817',
        'SlurmdPort=6818',
        'SlurmUser=root',
        'SlurmdUser=root',
        'AuthType=auth/munge',
        'CredType=cred/munge',
        `AuthInfo=socket=${d}/munge.sock`,
        `StateSaveLocation=${d}/state`,
        `SlurmdSpoolDir=${d}/spool`,
        `SlurmctldPidFile=${d}/slurmctld.pid`,
        `SlurmdPidFile=${d}/slurmd.pid`,
        `SlurmctldLogFile=${d}/slurmctld.log`,
        `SlurmdLogFile=${d}/slurmd.log`,
        `PlugStackConfig=${d}/plugstack.conf`,
        'MailProg=/bin/true',
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'JobAcctGatherType=jobacct_gather/none',
        'AccountingStorageType=accounting_storage/none',
        'JobCompType=jobcomp/none',
        'SchedulerType=sched/builtin',
        'SelectType=select/cons_tres',
        'SelectTypeParameters=CR_CPU',
        'MpiDefault=none',
        'ReturnToService=2',
        'MinJobAge=2',
        'KillWait=5',
        'SlurmctldDebug=info',
        'SlurmdDebug=info',
        'NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN',
        'PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP',
        '',
      ].join('\n'),
    );
    const sock = join(d, 'munge.sock');
    this.#daemon('munged', [
      'munged',
      '--foreground',
      `--socket=${sock}`,
      `--key-file=${d}/munge.key`,
      `--pid-file=${d}/munged.pid`,
      `--log-file=${d}/munged.log`,
      `--seed-file=${d}/munged.seed`,
    ]);
    await this.#until(() => existsSync(sock), 10_000, 'munged to create its socket');
    this.#daemon('slurmctld', ['slurmctld', '-D', '-i', '-f', this.conf]);
    this.#daemon('slurmd', ['slurmd', '-D', '-N', 'localhost', '-f', this.conf]);
    await this.#until(
      async () => (await this.run(['sinfo', '--noheader', '--Node', '--format=%T'])).stdout.trim() === 'idle',
      30_000,
      'the Slurm node to be idle',
    );
  }

  /** Spawns `argv` inside the sandbox (namespace, hosts file, host name), tracked for cleanup. */
  spawn(argv: string[], env: NodeJS.ProcessEnv = this.env): ChildProcess {
    const e = join(this.dir, 'etc');
    const wrap = `mount --bind ${e}/hosts /etc/hosts && mount --bind ${e}/resolv.conf /etc/resolv.conf && mount --bind ${e}/nsswitch.conf /etc/nsswitch.conf && hostname localhost && exec "$@"`;
    // nsenter and unshare exec (no fork), and so does sh: the child's pid is the command's.
    const proc = spawn('nsenter', [`--net=${this.#nsFile}`, 'unshare', '--mount', '--uts', '--', 'sh', '-c', wrap, 'sh', ...argv], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#procs.add(proc);
    proc.once('exit', () => this.#procs.delete(proc));
    return proc;
  }

  #daemon(name: string, argv: string[]): void {
    const proc = this.spawn(argv);
    let out = '';
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => (out += s));
    proc.once('exit', (code, signal) => {
      if (this.daemons.get(name) === proc && !this.#stopping)
        process.stderr.write(`slurm sandbox: ${name} exited (${code ?? signal}):\n${out.slice(-3000)}\n`);
    });
    this.daemons.set(name, proc);
  }

  /** Runs a command inside the sandbox to its end (killed after `timeoutMs`). */
  run(argv: string[], timeoutMs = 20_000): Promise<RunResult> {
    const proc = this.spawn(argv);
    let stdout = '';
    let stderr = '';
    proc.stdout!.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    proc.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    return new Promise((resolve) =>
      proc.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      }),
    );
  }

  /** Job ids Slurm lists as pending, running or completing. */
  async jobs(): Promise<string[]> {
    const r = await this.run(['squeue', '--noheader', '--format=%i']);
    if (r.code !== 0) throw new Error(`squeue failed (${r.code}): ${r.stderr}`);
    return r.stdout
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
  }

  /**
   * Pids of every process in the namespace but the sandbox's daemons and slurmctld's helper
   * (slurmscriptd, its child). Job steps are children of slurmd: they count.
   */
  strayPids(): number[] {
    const daemons = new Set([...this.daemons.values()].map((p) => p.pid));
    const ctld = this.daemons.get('slurmctld')?.pid;
    return this.#nsPids().filter((pid) => !daemons.has(pid) && parentOf(pid) !== ctld);
  }

  #nsPids(): number[] {
    try {
      return execFileSync('ip', ['netns', 'pids', this.ns], { encoding: 'utf8', timeout: 10_000 }).split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  }

  /** The end of each daemon's log, for a failure message. */
  logs(): string {
    return ['slurmctld.log', 'slurmd.log']
      .map((f) => {
        try {
          return `--- ${f}\n${readFileSync(join(this.dir, f), 'utf8').split('\n').slice(-30).join('\n')}`;
        } catch {
          return '';
        }
      })
      .join('\n');
  }

  async #until(check: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${this.logs()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  #stopping = false;

  /** Stops slurmd, slurmctld and munged (SIGTERM, SIGKILL after 10 s), then the rest; deletes all. */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const name of ['slurmd', 'slurmctld', 'munged']) {
      const p = this.daemons.get(name);
      if (!p || p.exitCode !== null || p.signalCode !== null) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => p.kill('SIGKILL'), 10_000);
        p.once('exit', () => {
          clearTimeout(timer);
          resolve();
        });
        p.kill('SIGTERM');
      });
    }
    this.stopSync();
  }

  /** Last resort (exit hooks too): SIGKILL by pid, delete the namespace and the directory. */
  stopSync(): void {
    this.#stopping = true;
    for (const p of this.#procs) {
      if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) {
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    // Anything else still in our namespace (a job step Slurm left) is ours too.
    for (const pid of this.#nsPids()) {
      try {
        if (pid !== process.pid) process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    try {
      execFileSync('ip', ['netns', 'del', this.ns], { stdio: 'ignore', timeout: 10_000 });
    } catch {
      // already gone
    }
    rmSync(this.dir, { recursive: true, force: true });
    live.delete(this);
  }
}
