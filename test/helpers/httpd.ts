/**
 * Shared pieces of the httpd tests: the seed's class C and sleeping computation, dispy's captured
 * responses, a shape check against them, and a server factory bound to 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DispyHTTPServer, type DispyHTTPServerOptions, type ViewedCluster } from '../../src/index.js';

/** The seed's class: its toString() is what /node_info shows as the job's arguments. */
export class C {
  s: string;
  i: number;
  constructor(s: string, i: number) {
    this.s = s;
    this.i = i;
  }
  toString(): string {
    return `C(${this.s}, ${this.i.toFixed(4)})`;
  }
}

/** The seed's computation: sleeps `n` seconds, returns `n * obj.i`. */
export async function compute(obj: C, n = 1): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, n * 1000));
  return n * obj.i;
}

/** dispy's own answer for `name` (test/fixtures/dispy-http). */
export function dispySample(name: string): any {
  return JSON.parse(readFileSync(new URL(`../fixtures/dispy-http/${name}.json`, import.meta.url), 'utf8'));
}

/** Asserts `ours` has every key of dispy's `sample` with a value of the same JSON type (recursively). */
export function assertShape(ours: unknown, sample: unknown, path = '$'): void {
  if (sample === null) return;
  if (Array.isArray(sample)) {
    assert.ok(Array.isArray(ours), `${path} is an array`);
    if (sample.length && (ours as unknown[]).length)
      for (const [i, o] of (ours as unknown[]).entries()) assertShape(o, sample[0], `${path}[${i}]`);
    return;
  }
  if (typeof sample === 'object') {
    assert.ok(ours !== null && typeof ours === 'object' && !Array.isArray(ours), `${path} is an object`);
    for (const [k, v] of Object.entries(sample as object)) {
      assert.ok(Object.hasOwn(ours as object, k), `${path}.${k} is present`);
      // avail_info may be null on a node without metrics; dispy's sample has it.
      if (k === 'avail_info' && (ours as Record<string, unknown>)[k] === null) continue;
      // cluster_jobs is keyed by cluster name: compare the values.
      if (k === 'cluster_jobs') {
        for (const list of Object.values((ours as Record<string, unknown>)[k] as object))
          assertShape(list, Object.values(v as object)[0], `${path}.${k}.*`);
        continue;
      }
      assertShape((ours as Record<string, unknown>)[k], v, `${path}.${k}`);
    }
    return;
  }
  assert.equal(typeof ours, typeof sample, `${path} is a ${typeof sample}`);
}

/** Checks a node object: dispy's fields and types, ours too, finite numbers, epoch seconds. */
export function assertNode(n: any): void {
  assertShape(n, dispySample('nodes')[0].nodes[0]);
  for (const k of ['port', 'machine_cpus', 'cpu_used', 'status']) assert.equal(typeof n[k], 'number', `node.${k}`);
  assert.equal(typeof n.platform, 'string');
  for (const k of ['cpus', 'avail_cpus', 'busy', 'jobs_done', 'cpu_time', 'tx', 'rx', 'update_time', 'port', 'machine_cpus', 'cpu_used'])
    assert.ok(Number.isFinite(n[k]), `node.${k} is finite`);
  assert.ok(Math.abs(n.update_time - Date.now() / 1000) < 600, `update_time ${n.update_time} is epoch seconds`);
  if (n.avail_info !== null) {
    assert.deepEqual(Object.keys(n.avail_info).sort(), ['cpu', 'disk', 'memory', 'swap']);
    for (const v of Object.values(n.avail_info)) assert.ok(Number.isFinite(v), 'avail_info values are finite');
  }
}

/** A server on 127.0.0.1 with an ephemeral port (never the '' default in tests). */
export async function startServer(
  cluster: ViewedCluster | null,
  opts: DispyHTTPServerOptions = {},
): Promise<{ server: DispyHTTPServer; base: string }> {
  const server = new DispyHTTPServer(cluster, { host: '127.0.0.1', port: 0, pollSec: 1, logLevel: 'warn', ...opts });
  const a = await server.listening;
  return { server, base: a.url };
}
