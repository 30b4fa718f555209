/**
 * The computation of examples/module-computation.ts: a module with an npm import (zod). The
 * client bundles it with its imports (esbuild) and sends the bundle; nodes need no npm install.
 */
import { z } from 'zod';

const Order = z.object({
  id: z.string().min(1),
  lines: z.array(z.object({ sku: z.string(), qty: z.number().int().positive(), price: z.number().nonnegative() })).min(1),
  coupon: z.number().min(0).max(0.5).default(0),
});

export type OrderInput = z.input<typeof Order>;

/** Validates an order (throws a ZodError for a bad one: the job ends Terminated) and prices it. */
export async function priceOrder(input: unknown): Promise<{ id: string; items: number; total: number }> {
  const order = Order.parse(input);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const gross = order.lines.reduce((sum, l) => sum + l.qty * l.price, 0);
  return { id: order.id, items: order.lines.reduce((n, l) => n + l.qty, 0), total: Math.round(gross * (1 - order.coupon) * 100) / 100 };
}
