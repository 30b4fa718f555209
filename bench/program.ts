/**
 * Program-job throughput: a trivial shell script (`exit 0`) as the computation, 2,000 jobs
 * submitted at once on the bench node; each job is a process spawned by a runner, so this
 * measures spawn cost more than dispyts.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobCluster, JobStatus } from '../src/index.js';
import { BENCH_SECRET, clusterReady, closeCluster, log, round, type BenchNode } from './lib.js';

export interface ProgramThroughputResult {
  jobs: number;
  wallMs: number;
  jobsPerSec: number;
  program: string;
}

export async function runProgramThroughput(node: BenchNode, jobs = 2_000): Promise<ProgramThroughputResult> {
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-bench-prog-'));
  const program = join(dir, 'noop.sh');
  writeFileSync(program, '#!/bin/sh\nexit 0\n');
  chmodSync(program, 0o755);
  let cluster: JobCluster | null = null;
  try {
    cluster = new JobCluster(program, { nodes: [{ host: node.host, port: node.port }], secret: BENCH_SECRET });
    cluster.on('error', (err) => log(`cluster error: ${err.message}`));
    await clusterReady(cluster);
    for (let i = 0; i < 100; i++) cluster.submit(i);
    if (!(await cluster.wait(60))) throw new Error('program warm-up did not finish');
    const t0 = performance.now();
    const list = Array.from({ length: jobs }, (_, i) => cluster!.submit(i));
    if (!(await cluster.wait(300))) throw new Error(`${jobs} program jobs not done in 300 s`);
    const wallMs = performance.now() - t0;
    const bad = list.find((j) => j.status !== JobStatus.Finished || j.result !== 0);
    if (bad) throw new Error(`program job ${String(bad.id)}: status ${bad.status}, result ${String(bad.result)}, ${String(bad.exception)}`);
    return { jobs, wallMs: round(wallMs, 1), jobsPerSec: round(jobs / (wallMs / 1000), 0), program: '#!/bin/sh exit 0' };
  } finally {
    if (cluster) await closeCluster(cluster);
    rmSync(dir, { recursive: true, force: true });
  }
}
