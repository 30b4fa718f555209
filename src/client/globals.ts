/**
 * A cluster's `globals` option: named values (msgpack, as job arguments) that the runner defines
 * as `const`s in a function computation's scope, next to its `depends` (src/node/job-depends.ts).
 */
import { DispyError, invalidOption } from '../errors.js';
import type { Computation } from '../protocol/messages.js';
import { PayloadCodec } from '../protocol/payload.js';

const IDENTIFIER = /^[\p{L}_$][\p{L}\p{N}_$]*$/u;

type AnyClass = abstract new (...args: never[]) => object;

/** A function computation's wire form with `globals` encoded into it (checked here: names, values, clashes). */
export function withGlobals(wire: Computation, classes: [string, AnyClass][], globals: Record<string, unknown>): Computation {
  if (wire.kind !== 'function') return wire;
  if (globals === null || typeof globals !== 'object' || Array.isArray(globals))
    throw invalidOption('globals', 'an object of names and values', globals);
  const names = Object.keys(globals);
  const taken = new Set(wire.depends.map((d) => d.name));
  for (const n of names) {
    if (!IDENTIFIER.test(n)) throw new DispyError('DISPY_ERR_INVALID_OPTION', `globals: \`${n}\` is not a JavaScript identifier`);
    if (taken.has(n))
      throw new DispyError('DISPY_ERR_INVALID_OPTION', `globals: \`${n}\` is also the name of a function or class in depends`);
  }
  if (names.length === 0) return wire;
  const values = new PayloadCodec(classes).encode(
    names.map((n) => globals[n]),
    'globals',
  );
  return { ...wire, globals: { names, values: Buffer.from(values).toString('base64') } };
}
