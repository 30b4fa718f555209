/**
 * DispyCluster: JobCluster and SharedJobCluster implement one interface, jobs and nodes name
 * their cluster by it, and the HTTP server tells a shared cluster by `shared`, never by the
 * class's name (which minification changes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, SharedJobCluster, type DispyJob, type DispyNode } from '../src/index.js';
import type { DispyCluster } from '../src/client/dispy-cluster.js';
import { isSharedCluster, type ViewedCluster } from '../src/httpd/cluster-view.js';

// Type-level: both kinds are a DispyCluster of their computation, and what the server views.
const asCluster = (c: JobCluster<(x: number) => number> | SharedJobCluster<(x: number) => number>): DispyCluster<(x: number) => number> =>
  c;
const asViewed = (c: DispyCluster): ViewedCluster => c;
const jobCluster = (j: DispyJob): DispyCluster | null => j.cluster;
const nodeCluster = (n: DispyNode): DispyCluster => n.cluster;
void [asCluster, asViewed, jobCluster, nodeCluster];

test('shared is false for a JobCluster, true for a SharedJobCluster, whatever the class is called', async () => {
  const local = new JobCluster((x: number) => x, { nodes: [], logLevel: 'silent' });
  assert.equal(local.shared, false);
  assert.equal(isSharedCluster(local), false);
  await local.close();
  class Minified extends SharedJobCluster {}
  const shared = new Minified((x: number) => x, { schedulerHost: '127.0.0.1', schedulerPort: 1, logLevel: 'silent' });
  shared.on('error', () => undefined);
  assert.equal(isSharedCluster(shared), true);
  await shared.close({ terminate: true });
  // A stand-in whose class happens to be called SharedJobCluster is not taken for one.
  const SharedJobClusterName = {
    SharedJobCluster: class {
      readonly name = 'x';
      on() {}
      off() {}
    },
  }.SharedJobCluster;
  assert.equal(SharedJobClusterName.name, 'SharedJobCluster');
  assert.equal(isSharedCluster(new SharedJobClusterName()), false);
});
