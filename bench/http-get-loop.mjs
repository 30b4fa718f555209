// HTTP client of the httpd benchmark, in its own process (as a browser would be): sequential
// GETs of one path on 127.0.0.1 over a keep-alive connection, after an untimed warm-up.
// Usage: node bench/http-get-loop.mjs PORT PATH COUNT WARMUP
// Prints one JSON line: { samplesMs: [...], bytes } (bytes of the last answer).
import http from 'node:http';

const [port, path, count, warmup] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get() {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent }, (res) => {
        let n = 0;
        res.on('data', (d) => (n += d.length));
        res.on('end', () => (res.statusCode === 200 ? resolve(n) : reject(new Error(`${path}: ${res.statusCode}`))));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

for (let i = 0; i < warmup; i++) await get();
const samplesMs = [];
let bytes = 0;
for (let i = 0; i < count; i++) {
  const s = performance.now();
  bytes = await get();
  samplesMs.push(performance.now() - s);
}
agent.destroy();
process.stdout.write(`${JSON.stringify({ samplesMs, bytes })}\n`);
