/**
 * Two clusters in one program, watched by one DispyHTTPServer: the server is created with the
 * first cluster, and the second is created with `clusterStatus: httpServer.clusterStatus` (as in
 * the seed; `httpServer.addCluster(cluster)` does the same). The pages then offer each cluster
 * and `* Combined`, which adds them up. Both clusters use the same nodes: within one program
 * they share each node's connection and CPUs.
 *
 *   npm run build:js && node --import tsx examples/two-clusters.ts --linger 60
 *   # and open http://127.0.0.1:8181/ while it runs
 *
 * Options: --port N (HTTP port, default 8181; 0 = any), --http-host ADDR (default 127.0.0.1),
 * --poll-sec S (default 2), --jobs N (jobs per cluster; default 12), --job-sec S (longest job;
 * default 3), --linger S (keep serving S seconds after the jobs end, or until a line arrives on
 * stdin; default 0), and those of examples/local-nodes.ts (--hosts, --cpus, --nodes, --secret).
 * It prints `HTTP server at <url>` once listening, `jobs done` when both clusters are idle and
 * `done` at the end.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { DispyHTTPServer, JobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';

async function square(x: number, sec: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, sec * 1000));
  return x * x;
}

async function reverse(word: string, sec: number): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, sec * 1000));
  return [...word].reverse().join('');
}

const { values } = parseArgs({
  options: {
    ...NODE_OPTIONS,
    port: { type: 'string', default: '8181' },
    'http-host': { type: 'string', default: '127.0.0.1' },
    'poll-sec': { type: 'string', default: '2' },
    jobs: { type: 'string', default: '12' },
    'job-sec': { type: 'string', default: '3' },
    linger: { type: 'string', default: '0' },
  },
});
const jobSec = Number(values['job-sec']);
const seconds = (): number => Math.round(jobSec * (0.3 + 0.7 * Math.random()) * 100) / 100;

const where = await exampleNodes(values);
try {
  const squares = new JobCluster(square, { nodes: where.nodes, secret: where.secret, name: 'squares' });
  const httpServer = new DispyHTTPServer(squares, {
    host: values['http-host'],
    port: Number(values.port),
    pollSec: Number(values['poll-sec']),
  });
  // The second cluster reports to the same server.
  const words = new JobCluster(reverse, {
    nodes: where.nodes,
    secret: where.secret,
    name: 'words',
    clusterStatus: httpServer.clusterStatus,
  });
  const address = await httpServer.listening;
  console.log(`HTTP server at ${address.url}`);

  const n = Number(values.jobs);
  const squareJobs = Array.from({ length: n }, (_, i) => squares.submit(i, seconds()));
  const wordJobs = Array.from({ length: n }, (_, i) => words.submit(`word-${i}`, seconds()));
  const results = await Promise.all([Promise.all(squareJobs.map((j) => j.wait())), Promise.all(wordJobs.map((j) => j.wait()))]);
  console.log(`squares: ${results[0].join(' ')}`);
  console.log(`words: ${results[1].join(' ')}`);
  console.log('jobs done');

  const linger = Number(values.linger);
  if (linger > 0) {
    console.log(`serving ${linger} s more (press Enter to stop sooner)`);
    const lines = createInterface({ input: process.stdin });
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, linger * 1000);
      lines.once('line', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    lines.close();
  }
  await Promise.all([squares.close(), words.close()]);
  await httpServer.shutdown(); // waits pollSec so browsers see the clusters closed
  console.log('done');
} finally {
  await where.stop();
}
