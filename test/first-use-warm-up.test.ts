/**
 * What the daemon, its runners and clients do ahead of a new program's first job (issue 22): the
 * protocol's warm-up samples take the path real messages take (each parses), and a job's CPU
 * accounting reads the clock-tick rate without spawning a program.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { clientMessageSchema, handshakeSchema, nodeMessageSchema } from '../src/protocol/messages.js';
import { WARM_UP_SAMPLES } from '../src/protocol/warm-up.js';
import { clockTicks } from '../src/node/child-cpu.js';

test('every warm-up sample parses with its schema (the compiled path is the one jobs take)', () => {
  const sets = [
    [handshakeSchema, WARM_UP_SAMPLES.handshake],
    [clientMessageSchema, WARM_UP_SAMPLES.fromClient],
    [nodeMessageSchema, WARM_UP_SAMPLES.fromNode],
  ] as const;
  for (const [schema, samples] of sets) {
    for (const s of samples) {
      const r = schema.safeParse(s);
      assert.ok(r.success, `${JSON.stringify((s as { t: string }).t)}: ${r.success ? '' : r.error.message}`);
    }
  }
  // One of each kind a first job's exchange carries.
  const kinds = (samples: readonly object[]): string[] => samples.map((s) => (s as { t: string }).t);
  assert.deepEqual(kinds(WARM_UP_SAMPLES.fromClient).slice(0, 2), ['setup', 'job']);
  for (const t of ['info', 'reply', 'started', 'done']) assert.ok(kinds(WARM_UP_SAMPLES.fromNode).includes(t), t);
});

test('clock ticks per second come from the auxiliary vector and agree with getconf CLK_TCK', { skip: process.platform !== 'linux' }, () => {
  const expected = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  assert.equal(clockTicks(), expected);
});

test('reading children CPU time spawns no program (a job paid for `getconf` in its runner)', {
  skip: process.platform !== 'linux',
}, async () => {
  const cp = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
  const spawned: string[] = [];
  const saved = { execFileSync: cp.execFileSync, spawnSync: cp.spawnSync, execSync: cp.execSync };
  cp.execFileSync = ((file: string, ...rest: unknown[]) => {
    spawned.push(file);
    return (saved.execFileSync as (...a: unknown[]) => unknown)(file, ...rest);
  }) as typeof cp.execFileSync;
  cp.spawnSync = ((file: string, ...rest: unknown[]) => {
    spawned.push(file);
    return (saved.spawnSync as (...a: unknown[]) => unknown)(file, ...rest);
  }) as typeof cp.spawnSync;
  syncBuiltinESMExports();
  try {
    // A fresh instance of the module: nothing cached from the test above.
    const fresh = (await import(
      new URL('../src/node/child-cpu.ts?no-spawn', import.meta.url).href
    )) as typeof import('../src/node/child-cpu.js');
    assert.equal(typeof fresh.childrenCpuSeconds(), 'number');
    assert.ok(fresh.clockTicks() > 0);
  } finally {
    Object.assign(cp, saved);
    syncBuiltinESMExports();
  }
  assert.deepEqual(spawned, []);
});
