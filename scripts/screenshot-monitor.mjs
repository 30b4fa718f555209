// Makes docs/monitor.png, the README's picture of the Monitor page: runs `dispyts demo` (two
// nodes on 127.0.0.2 and 127.0.0.3, monitor on a free loopback port), lets jobs flow for a
// while, and photographs the page in headless Chromium (/usr/bin/chromium). Needs a build
// (`npm run build:js`). Usage: node scripts/screenshot-monitor.mjs [seconds-of-jobs, default 20]
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = fileURLToPath(new URL('..', import.meta.url));
const seconds = Number(process.argv[2] ?? 20);
const demo = spawn(process.execPath, ['dist/cli/main.js', 'demo', '--port', '0', '--job-seconds', '6', '--cpus', '2'], {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
});
const exited = new Promise((r) => demo.once('exit', r));
let out = '';
demo.stdout.setEncoding('utf8').on('data', (d) => (out += d));
try {
  const url = await new Promise((resolve, reject) => {
    const t = setInterval(() => {
      const m = /^monitor: (\S+)/m.exec(out);
      if (m) {
        clearInterval(t);
        resolve(m[1]);
      }
    }, 100);
    demo.once('exit', (code) => reject(new Error(`the demo exited with ${code}`)));
  });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  // The same flags as the browser tests (test/helpers/browser.ts): nothing leaves loopback.
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 }, deviceScaleFactor: 1 });
    await page.goto(url);
    await page.waitForSelector('table.nodes tr.row');
    await page.waitForTimeout(3000);
    // The whole page: nav, the cluster, its counters, the nodes and the charts.
    await page.screenshot({ path: `${root}docs/monitor.png`, fullPage: true });
    process.stderr.write(`wrote docs/monitor.png from ${url}\n`);
  } finally {
    await browser.close();
  }
} finally {
  demo.kill('SIGINT');
  await exited;
}
