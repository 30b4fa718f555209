/**
 * The cluster's type inference, checked by the compiler: test/fixtures/types/job-cluster-inference.ts
 * (`submit` takes `Parameters<F>` and gives `DispyJob<Awaited<ReturnType<F>>>`, job and node
 * statuses are distinct, `isFinal` narrows) must compile, and the same file with one expectation
 * made wrong must not — so this test fails when inference breaks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './helpers/daemon.js';

/** The compiler `npm run typecheck` runs. */
const TSC = join(ROOT, 'node_modules', '.bin', 'tsc');
const FIXTURE_DIR = join(ROOT, 'test', 'fixtures', 'types');

function tsc(project: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(TSC, ['-p', project], { cwd: ROOT, timeout: 170_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

test('JobCluster<F> and SharedJobCluster<F> infer arguments and results; statuses are distinct unions', async () => {
  const ok = await tsc(join(FIXTURE_DIR, 'tsconfig.json'));
  assert.equal(ok.code, 0, ok.out);

  // The same checks with one expectation wrong (and one expected error gone) must fail.
  const dir = mkdtempSync(join(tmpdir(), 'dispyts-types-'));
  try {
    const src = readFileSync(join(FIXTURE_DIR, 'job-cluster-inference.ts'), 'utf8').replace(
      "'../../../src/index.js'",
      JSON.stringify(join(ROOT, 'src', 'index.js')),
    );
    const broken = src
      .replace('ReturnType<typeof sync.submit>, DispyJob<number>', 'ReturnType<typeof sync.submit>, DispyJob<string>')
      .replace("cluster.submit('1', 'x');", "cluster.submit(1, 'x');");
    assert.notEqual(broken, src);
    writeFileSync(join(dir, 'broken.ts'), broken);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: join(ROOT, 'tsconfig.json'),
        compilerOptions: { noEmit: true, typeRoots: [join(ROOT, 'node_modules', '@types')] },
        include: [],
        files: ['broken.ts'],
      }),
    );
    const bad = await tsc(join(dir, 'tsconfig.json'));
    assert.notEqual(bad.code, 0, 'the wrong expectations compiled');
    assert.match(bad.out, /broken\.ts\(\d+,\d+\): error TS2344/);
    assert.match(bad.out, /broken\.ts\(\d+,\d+\): error TS2578: Unused '@ts-expect-error' directive/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
