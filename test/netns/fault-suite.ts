/**
 * Shared set-up of the fault tests on network namespaces (faults-nodes.test.ts and
 * faults-clients.test.ts, two files so each stays well inside the per-file time limit): a
 * harness of 4 hosts (nodes on 1-3, the client program on 4), and helpers reading what the
 * client program (fixtures/fault-client.ts) reports.
 */
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TEST_SECRET } from '../helpers/daemon.js';
import { NetnsHarness, netnsUnavailable, sweepStale, type LiveClient, type NetnsHost, type NetnsNode } from './harness.js';

export const skipReason = netnsUnavailable();
if (!skipReason) sweepStale();
if (skipReason) process.stdout.write(`# multi-host fault suite skipped: ${skipReason}\n`);

export const harness = skipReason ? undefined : new NetnsHarness();
export let hosts: NetnsHost[] = [];
export let scratch = '';

/** Registers the suite's before/after hooks (call inside its describe). */
export function useFaultHarness(): void {
  before(() => {
    hosts = harness!.create(4);
    scratch = mkdtempSync(join(tmpdir(), 'dispyts-faults-'));
  });

  after(async () => {
    await harness!.cleanup();
    rmSync(scratch, { recursive: true, force: true });
    assert.deepEqual(harness!.leftoverNamespaces(), [], 'no namespace left');
    assert.deepEqual(harness!.livePids(), [], 'no process left');
  });
}

export interface JobLine {
  id: string;
  status: string;
  ip: string | null;
  result: unknown;
  exception: string | null;
  requeued: number;
  finals: number;
}
export type Line = Record<string, unknown>;

export async function startNodes(args: string[] = []): Promise<NetnsNode[]> {
  return Promise.all(hosts.slice(0, 3).map((h) => harness!.startNode(h, { cpus: 1, args })));
}

export function client(cfg: Record<string, unknown>): LiveClient {
  return harness!.startClient(hosts[3]!, 'fault-client', [JSON.stringify({ secret: TEST_SECRET, ...cfg })]);
}

export const spec = (ns: NetnsNode[]) => ns.map((n) => ({ host: n.ip, port: n.port }));
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function wave(c: LiveClient, n: number, timeoutMs = 40_000): Promise<JobLine[]> {
  const line = await c.waitFor<{ jobs: JobLine[]; fatal?: string }>((l) => l.ev === 'wave' && l.wave === n, timeoutMs, `wave ${n}`);
  return line.jobs;
}

export function assertOnceEach(jobs: JobLine[]): void {
  for (const j of jobs) assert.equal(j.finals, 1, `job ${j.id} has ${j.finals} final statuses`);
}

export async function runningOn(c: LiveClient): Promise<Map<string, string>> {
  const line = await c.waitFor<{ ids: [string, string][] }>((l) => l.ev === 'running' && l.wave === 0, 30_000, 'running');
  return new Map(line.ids.map(([id, ip]) => [ip, id]));
}

export async function stopAll(nodes: NetnsNode[], ...clients: LiveClient[]): Promise<void> {
  for (const c of clients) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.stop('SIGKILL')));
}
