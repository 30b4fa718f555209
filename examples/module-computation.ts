/**
 * A module computation: `{ module, export }` names a TypeScript (or JavaScript) module and the
 * export each job calls. The client bundles the module with everything it imports, npm packages
 * included (here zod), and ships that one file; nodes need none of the packages installed.
 * A job that throws ends Terminated, with the remote error in `job.exception`.
 *
 *   npm run build:js && node --import tsx examples/module-computation.ts
 *
 * Options: those of examples/local-nodes.ts (--hosts, --cpus, --nodes, --secret).
 */
import { parseArgs } from 'node:util';
import { type DispyJobError, JobCluster } from '../src/index.js';
import { NODE_OPTIONS, exampleNodes } from './local-nodes.js';
// A type-only import: the module itself runs on the nodes, never here.
import type { OrderInput, priceOrder } from './module-work.js';

const { values } = parseArgs({ options: { ...NODE_OPTIONS } });
const where = await exampleNodes(values);
try {
  const cluster = new JobCluster<typeof priceOrder>(
    { module: new URL('./module-work.ts', import.meta.url).href, export: 'priceOrder' },
    { nodes: where.nodes, secret: where.secret },
  );
  const orders: OrderInput[] = [
    { id: 'A-1', lines: [{ sku: 'pen', qty: 3, price: 1.5 }] },
    {
      id: 'A-2',
      lines: [
        { sku: 'pad', qty: 2, price: 4 },
        { sku: 'ink', qty: 1, price: 12 },
      ],
      coupon: 0.25,
    },
    { id: 'A-3', lines: [{ sku: 'box', qty: 10, price: 0.99 }] },
    { id: 'A-4', lines: [{ sku: 'pen', qty: -1, price: 1.5 }] }, // invalid: zod rejects it on the node
  ];
  const jobs = orders.map((o) => cluster.submit(o));
  for (const job of jobs) {
    try {
      const { id, items, total } = await job.wait();
      console.log(`order ${id} on ${job.ipAddr}: ${items} items, total ${total.toFixed(2)}`);
    } catch (err) {
      const e = err as DispyJobError;
      console.log(`order ${(job.args[0] as OrderInput).id}: ${e.code}: ${e.message.split('\n')[0]}`);
    }
  }
  await cluster.close();
} finally {
  await where.stop();
}
