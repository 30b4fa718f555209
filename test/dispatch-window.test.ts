/**
 * The dispatch window (src/client/dispatch-window.ts) without a daemon: how many jobs a node
 * holds per CPU as the average job time is learnt, the caps on a connection and under a
 * dispatch policy, the load order between nodes, and the running average.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MAX_WINDOW_PER_CPU,
  SCHEDULER_SHORT_JOB_MS,
  hasRoom,
  nextAvgMs,
  nodeLoad,
  policyWindowPerCpu,
  windowPerCpu,
} from '../src/client/dispatch-window.js';

test('one job per CPU until a job time is known, then at least two, more for short jobs, never over the maximum', () => {
  assert.equal(windowPerCpu(Infinity), 1);
  assert.equal(windowPerCpu(1000), 2, 'long jobs: one running, one queued behind it');
  assert.equal(windowPerCpu(10), 2);
  assert.equal(windowPerCpu(5), 3, 'enough to cover about 10 ms of work');
  assert.equal(windowPerCpu(1), 11);
  assert.equal(windowPerCpu(0), MAX_WINDOW_PER_CPU);
  assert.equal(windowPerCpu(0.001), MAX_WINDOW_PER_CPU);
});

test('under a dispatch policy, unknown and long jobs get one per CPU; short ones keep the pipelining window', () => {
  assert.equal(policyWindowPerCpu(Infinity), 1);
  assert.equal(policyWindowPerCpu(SCHEDULER_SHORT_JOB_MS), 1);
  assert.equal(policyWindowPerCpu(SCHEDULER_SHORT_JOB_MS - 1), windowPerCpu(SCHEDULER_SHORT_JOB_MS - 1));
  assert.equal(policyWindowPerCpu(1), windowPerCpu(1));
});

test('room: the cluster window counts min(cap, node CPUs), the connection holds at most 64 per CPU', () => {
  const w = { cap: 4, inflight: 0, avgMs: Infinity };
  const link = { cpus: 2, inflight: 0 };
  // Unknown time: one per CPU of min(cap 4, cpus 2).
  assert.equal(hasRoom({ ...w, inflight: 1 }, link, false), true);
  assert.equal(hasRoom({ ...w, inflight: 2 }, link, false), false);
  // A cap below the node's CPUs limits the window.
  assert.equal(hasRoom({ cap: 1, inflight: 1, avgMs: Infinity }, { cpus: 8, inflight: 1 }, false), false);
  // Short jobs: windowPerCpu(1) = 11 per CPU.
  assert.equal(hasRoom({ ...w, avgMs: 1, inflight: 21 }, { cpus: 2, inflight: 21 }, false), true);
  assert.equal(hasRoom({ ...w, avgMs: 1, inflight: 22 }, { cpus: 2, inflight: 22 }, false), false);
  // The connection's overall window (other clusters' jobs on the same link count).
  assert.equal(hasRoom({ cap: 2, inflight: 0, avgMs: 0 }, { cpus: 2, inflight: 2 * MAX_WINDOW_PER_CPU - 1 }, false), true);
  assert.equal(hasRoom({ cap: 2, inflight: 0, avgMs: 0 }, { cpus: 2, inflight: 2 * MAX_WINDOW_PER_CPU }, false), false);
});

test('room under a policy: long jobs only to a free CPU of the connection, whoever holds the others', () => {
  const long = { cap: 2, inflight: 0, avgMs: 500 };
  assert.equal(hasRoom(long, { cpus: 2, inflight: 1 }, true), true);
  assert.equal(hasRoom(long, { cpus: 2, inflight: 2 }, true), false, 'another cluster holds both CPUs');
  assert.equal(hasRoom(long, { cpus: 2, inflight: 2 }, false), true, 'without a policy the cluster window rules');
  const short = { cap: 2, inflight: 0, avgMs: 1 };
  assert.equal(hasRoom(short, { cpus: 2, inflight: 10 }, true), true);
});

test('load: jobs per CPU of the connection first, the cluster share breaks ties', () => {
  const a = nodeLoad({ cap: 2, inflight: 1, avgMs: 1 }, { cpus: 2, inflight: 1 });
  const b = nodeLoad({ cap: 4, inflight: 1, avgMs: 1 }, { cpus: 4, inflight: 1 });
  assert.ok(b < a, 'a node with more CPUs is less loaded by the same job');
  const tieA = nodeLoad({ cap: 2, inflight: 0, avgMs: 1 }, { cpus: 2, inflight: 2 });
  const tieB = nodeLoad({ cap: 2, inflight: 2, avgMs: 1 }, { cpus: 2, inflight: 2 });
  assert.ok(tieA < tieB, "equal connections: the node holding fewer of this cluster's jobs first");
  assert.ok(tieB < nodeLoad({ cap: 2, inflight: 0, avgMs: 1 }, { cpus: 2, inflight: 3 }), 'the share never outweighs a whole job');
});

test('running average: the first job sets it, later ones weigh 20 %', () => {
  assert.equal(nextAvgMs(Infinity, 40), 40);
  assert.equal(nextAvgMs(40, 140), 60);
  assert.equal(nextAvgMs(60, 60), 60);
});
