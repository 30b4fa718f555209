/**
 * Multi-host throughput (issue 6, item 7): trivial jobs `(x) => x * 2` across three test hosts
 * on the network-namespace harness (test/netns/harness.ts).
 *
 * Hosts 10.77.0.1–3 each run `dispyts node --cpus 1`; a client on 10.77.0.4
 * (bench/netns-throughput-client.ts) runs, per run, a fresh JobCluster over the three nodes: waits
 * until all three are set up, 1,000 untimed warm-up jobs, then 20,000 jobs submitted at once, timed
 * from the first submit to the last result, every result checked. For comparison the same client,
 * in the same harness, runs the same thing against host 1's node alone (the in-namespace
 * single-node figure). The two kinds of run alternate (multi, single, multi, …) so that a change
 * in the machine's load hits both alike. Medians of 3 runs each.
 *
 * Addresses 10.77.0.x exist only inside the harness's namespaces; only IP literals are used.
 * Every process and namespace the harness made is removed at the end, also on errors.
 */
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { NetnsHarness, liveClient, netnsUnavailable, type NetnsNode } from '../test/netns/harness.js';
import { BENCH_SECRET, cpuSnapshot, log, median, round, type CpuSnapshot } from './lib.js';

const CLIENT = fileURLToPath(new URL('./netns-throughput-client.ts', import.meta.url));

export interface MultiHostRun {
  mode: 'multi' | 'single';
  run: number;
  wallMs: number;
  jobsPerSec: number;
  /** Timed jobs per node address. */
  perNode: Record<string, number>;
  /** From new JobCluster until every node was set up. */
  nodesReadyMs: number;
  /** CPU time during the timed part: the client, each daemon and its job runners (ms). */
  cpu: { clientMs: number; nodesMs: Record<string, number | null>; shareOfMachine: number | null };
}

export interface MultiHostResult {
  hosts: number;
  cpusPerHost: number;
  jobs: number;
  warmupJobsPerRun: number;
  runs: MultiHostRun[];
  singleNodeNetnsRuns: MultiHostRun[];
  medianJobsPerSec: number;
  singleNodeNetnsMedianJobsPerSec: number;
  ratioToSingleNodeNetns: number;
  ratioToLoopbackThroughput: number | null;
  loopbackMedianJobsPerSec: number | null;
  /** Timed jobs per node, summed over the multi-host runs, and each node's share. */
  distribution: Record<string, { jobs: number; share: number }>;
  cleanup: { leftoverNamespaces: string[]; livePids: number[] };
  note: string;
}

export interface MultiHostOptions {
  hosts: number;
  cpusPerHost: number;
  jobs: number;
  warmup: number;
  runs: number;
  /** The `throughput` section's median (loopback, one node) when it ran in this invocation. */
  loopbackMedianJobsPerSec?: number;
}

/** CPU ms of a daemon and its runners between two snapshots (null if unreadable). */
function nodeCpuMs(a: CpuSnapshot, b: CpuSnapshot): number | null {
  if (a.daemon === null || b.daemon === null) return null;
  let total = b.daemon - a.daemon;
  for (const [pid, v] of b.runners) {
    const before = a.runners.get(pid);
    // A runner started during the timed part counts from zero.
    if (v !== null) total += v - (before ?? 0);
  }
  return round(total, 0);
}

export async function runMultiHost(opts: MultiHostOptions): Promise<MultiHostResult | { skipped: string }> {
  const reason = netnsUnavailable();
  if (reason) {
    log(`multiHost skipped: ${reason}`);
    return { skipped: reason };
  }
  const harness = new NetnsHarness();
  let cleanupState: MultiHostResult['cleanup'] = { leftoverNamespaces: [], livePids: [] };
  let result: Omit<MultiHostResult, 'cleanup'>;
  try {
    const hosts = harness.create(opts.hosts + 1);
    const clientHost = hosts[opts.hosts]!;
    log(`multiHost: namespaces ${harness.namespaces.join(', ')}`);
    const nodes: NetnsNode[] = await Promise.all(
      hosts.slice(0, opts.hosts).map((h) => harness.startNode(h, { cpus: opts.cpusPerHost, secret: BENCH_SECRET })),
    );
    for (const n of nodes) log(`multiHost: node ${n.ip}:${n.port} (pid ${n.pid}, --cpus ${opts.cpusPerHost}) ready`);
    const nodeByIp = new Map(nodes.map((n) => [n.ip, n]));

    const schedule: { mode: 'multi' | 'single'; run: number }[] = [];
    for (let r = 1; r <= opts.runs; r++) schedule.push({ mode: 'multi', run: r }, { mode: 'single', run: r });
    const readyTimeoutMs = 20_000;
    const warmupTimeoutSec = 60;
    const batchTimeoutSec = 120;
    // Per run: set-up, warm-up, the timed batch and closing; plus the client's own start.
    const perRunS = readyTimeoutMs / 1000 + warmupTimeoutSec + batchTimeoutSec + 20;
    const maxSeconds = 30 + schedule.length * perRunS;
    const cfg = {
      secret: BENCH_SECRET,
      targets: {
        multi: nodes.map((n) => ({ host: n.ip, port: n.port })),
        single: [{ host: nodes[0]!.ip, port: nodes[0]!.port }],
      },
      schedule,
      jobs: opts.jobs,
      warmup: opts.warmup,
      readyTimeoutMs,
      warmupTimeoutSec,
      batchTimeoutSec,
      maxSeconds,
    };
    const client = liveClient(
      harness.spawnIn(clientHost, [process.execPath, '--import', 'tsx', CLIENT, JSON.stringify(cfg)]),
      (maxSeconds + 10) * 1000,
    );
    log(`multiHost: client on ${clientHost.ip} (pid ${client.proc.pid})`);

    const runs: MultiHostRun[] = [];
    const single: MultiHostRun[] = [];
    for (const { mode, run } of schedule) {
      const used = mode === 'multi' ? nodes : [nodes[0]!];
      await client.waitFor(
        (l) => l.phase === 'timed' && l.mode === mode && l.run === run,
        (30 + readyTimeoutMs / 1000 + warmupTimeoutSec + 20) * 1000,
        `the start of ${mode} run ${run}`,
      );
      const before = used.map((n) => cpuSnapshot(n.pid));
      const t0 = performance.now();
      const line = await client.waitFor<Record<string, unknown>>(
        (l) => l.phase === 'result' && l.mode === mode && l.run === run,
        (batchTimeoutSec + 10) * 1000,
        `the result of ${mode} run ${run}`,
      );
      const wallMs = performance.now() - t0;
      const after = used.map((n) => cpuSnapshot(n.pid));
      const nodesMs: Record<string, number | null> = {};
      for (const [i, n] of used.entries()) nodesMs[n.ip] = nodeCpuMs(before[i]!, after[i]!);
      const clientMs = line.clientCpuMs as number;
      const known = Object.values(nodesMs).every((v) => v !== null);
      const total = clientMs + Object.values(nodesMs).reduce<number>((a, v) => a + (v ?? 0), 0);
      const r: MultiHostRun = {
        mode,
        run,
        wallMs: line.wallMs as number,
        jobsPerSec: line.jobsPerSec as number,
        perNode: line.perNode as Record<string, number>,
        nodesReadyMs: line.nodesReadyMs as number,
        cpu: { clientMs, nodesMs, shareOfMachine: known ? round(total / (wallMs * os.cpus().length), 2) : null },
      };
      for (const ip of Object.keys(r.perNode))
        if (!nodeByIp.has(ip)) throw new Error(`${mode} run ${run}: jobs ran on an unknown node ${ip}`);
      log(
        `multiHost ${mode} run ${run}: ${r.jobsPerSec} jobs/s (${r.wallMs} ms), per node ${JSON.stringify(r.perNode)}, cpu ${JSON.stringify(r.cpu)}`,
      );
      (mode === 'multi' ? runs : single).push(r);
    }
    await client.waitFor((l) => l.phase === 'done', 30_000, 'the end of the runs');
    const end = await client.result;
    if (end.code !== 0) throw new Error(`benchmark client exited with ${end.code ?? end.signal}: ${end.stderr.slice(-2000)}`);

    const med = median(runs.map((r) => r.jobsPerSec));
    const singleMed = median(single.map((r) => r.jobsPerSec));
    const sums: Record<string, number> = {};
    for (const n of nodes) sums[n.ip] = 0;
    for (const r of runs) for (const [ip, c] of Object.entries(r.perNode)) sums[ip] = (sums[ip] ?? 0) + c;
    const all = Object.values(sums).reduce((a, b) => a + b, 0);
    const distribution: MultiHostResult['distribution'] = {};
    for (const [ip, c] of Object.entries(sums)) distribution[ip] = { jobs: c, share: round(c / all, 3) };
    const loop = opts.loopbackMedianJobsPerSec;
    const haveLoop = loop !== undefined && Number.isFinite(loop) && loop > 0;
    result = {
      hosts: opts.hosts,
      cpusPerHost: opts.cpusPerHost,
      jobs: opts.jobs,
      warmupJobsPerRun: opts.warmup,
      runs,
      singleNodeNetnsRuns: single,
      medianJobsPerSec: round(med, 0),
      singleNodeNetnsMedianJobsPerSec: round(singleMed, 0),
      ratioToSingleNodeNetns: round(med / singleMed, 3),
      ratioToLoopbackThroughput: haveLoop ? round(med / loop, 3) : null,
      loopbackMedianJobsPerSec: haveLoop ? loop : null,
      distribution,
      note:
        `hosts ${nodes.map((n) => n.ip).join(', ')} each run \`dispyts node --cpus ${opts.cpusPerHost}\` in a network namespace, the client runs on ${clientHost.ip}; ` +
        `the namespaces are joined by veth pairs to a bridge in a namespace of its own. Each run: a fresh JobCluster, all its nodes set up, ${opts.warmup.toLocaleString('en')} untimed warm-up jobs, ` +
        `then ${opts.jobs.toLocaleString('en')} jobs submitted at once, timed first submit to last result, every result checked; median of ${opts.runs} runs. ` +
        `singleNodeNetns: the same client against host ${nodes[0]!.ip} alone in the same harness (runs alternate multi/single). ` +
        `ratioToLoopbackThroughput: vs the throughput section (one --cpus 2 node on 127.0.0.2, client in the root namespace), null when it did not run. ` +
        `All daemons, runners and the client share this machine's ${os.cpus().length} CPUs, so the hosts are not independent machines: ` +
        `cpu.shareOfMachine is the CPU time of the client, the daemons and their runners during the timed part over wall time x CPUs.`,
    };
  } finally {
    await harness.cleanup();
    cleanupState = { leftoverNamespaces: harness.leftoverNamespaces(), livePids: harness.livePids() };
    log(
      `multiHost: harness cleaned up (leftover namespaces ${JSON.stringify(cleanupState.leftoverNamespaces)}, live pids ${JSON.stringify(cleanupState.livePids)})`,
    );
  }
  if (cleanupState.leftoverNamespaces.length || cleanupState.livePids.length) {
    throw new Error(
      `harness left namespaces ${cleanupState.leftoverNamespaces.join(', ') || 'none'} and processes ${cleanupState.livePids.join(', ') || 'none'} behind`,
    );
  }
  return { ...result, cleanup: cleanupState };
}
