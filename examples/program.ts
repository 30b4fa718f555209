/**
 * A program computation (dispy's `JobCluster('/path/to/program')`): the program file is sent
 * to every node, and each job runs it with the job's arguments as its command line (each one
 * `String()`ed). The job's result is the exit code (a non-zero one is a result too, not a
 * failure); stdout and stderr come back as text. Here the program is the shell script
 * examples/programs/sum-to.sh.
 *
 *   npm run build:js && node --import tsx examples/program.ts
 *
 * Options: --jobs N (default 8), --sleep S (seconds each run sleeps; default 1), and those of
 * examples/local-nodes.ts (--hosts, --cpus, --nodes, --secret).
 */
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { JobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

const { values } = parseArgs({
  options: { ...NODE_OPTIONS, jobs: { type: 'string', default: '8' }, sleep: { type: 'string', default: '1' } },
});
const program = fileURLToPath(new URL('./programs/sum-to.sh', import.meta.url));

const where = await exampleNodes(values);
try {
  // The type says what a job takes (anything: it becomes argv) and gives back (the exit code).
  const cluster = new JobCluster<(n: number, sleepSec: number) => number>(program, { nodes: where.nodes, secret: where.secret });
  const jobs = Array.from({ length: Number(values.jobs) }, (_, k) => cluster.submit(10 * (k + 1), Number(values.sleep)));
  let ok = 0;
  for (const [k, job] of jobs.entries()) {
    const n = 10 * (k + 1);
    const code = await job.wait();
    const expected = ((n * (n + 1)) / 2) % 7;
    if (code === expected) ok++;
    console.log(
      `job ${String(job.id)} on ${job.ipAddr}: exit code ${code} (${code === expected ? 'as expected' : `expected ${expected}`}); stdout: ${job.stdout.trim()}; stderr: ${job.stderr.trim()}`,
    );
  }
  console.log(`${ok} of ${jobs.length} exit codes as expected`);
  await cluster.close();
} finally {
  await where.stop();
}
