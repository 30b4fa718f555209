/**
 * The shared primitives of src/protocol/ that each replace copies: the running average of job
 * times (src/protocol/running-average.ts) and the free-variable rule of a function computation
 * (src/node/function-loader.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextAvgMs } from '../src/protocol/running-average.js';
import { nextAvgMs as windowAvg } from '../src/client/dispatch-window.js';
import { formatException, freeVariableOf } from '../src/node/function-loader.js';

test('the running average: the first job sets it, each later job weighs 1/5', () => {
  assert.equal(nextAvgMs(Number.POSITIVE_INFINITY, 40), 40);
  assert.equal(nextAvgMs(40, 140), 60);
  assert.equal(nextAvgMs(60, 60), 60);
  let avg = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 100; i++) avg = nextAvgMs(avg, 10);
  assert.equal(avg, 10);
  // The dispatch window's average is this one.
  assert.equal(windowAvg, nextAvgMs);
});

test('a free variable: a ReferenceError `x is not defined`, named; nothing else is one', () => {
  let err: unknown;
  try {
    // biome-ignore lint/nursery/noImpliedEval: a function that uses a name nobody defined, as a shipped computation would
    new Function('return notShipped + 1')();
  } catch (e) {
    err = e;
  }
  assert.equal(freeVariableOf(err), 'notShipped');
  assert.match(formatException(err), /DISPY_ERR_FREE_VARIABLE: the computation uses `notShipped`/);
  assert.equal(freeVariableOf(new ReferenceError("Cannot access 'x' before initialization")), null);
  assert.equal(freeVariableOf(new TypeError('x is not defined')), null);
  assert.equal(freeVariableOf('x is not defined'), null);
  assert.doesNotMatch(formatException(new TypeError('x is not defined')), /DISPY_ERR_FREE_VARIABLE/);
});
