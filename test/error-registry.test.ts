/**
 * The error registry (src/errors.ts): message templates written once, the retriable codes in
 * one place, and no job exception composed by hand as a `'DispyError: …'` string anywhere else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DispyError, ERROR_CODES, Errors, isRetriable, jobException, type DispyErrorCode } from '../src/errors.js';
import { ROOT } from './helpers/daemon.js';

test('templates build the texts users see, with their codes', () => {
  const closed = Errors.clusterClosed('sum');
  assert.ok(closed instanceof DispyError);
  assert.equal(closed.code, 'DISPY_ERR_CLUSTER_CLOSED');
  assert.equal(closed.message, 'cluster sum is closed');
  assert.equal(Errors.computationClosed('c1').message, 'computation c1 is closed');
  assert.equal(Errors.schedulerShuttingDown().code, 'DISPY_ERR_CONNECTION');
  assert.equal(Errors.nodeShuttingDown('127.0.0.1').message, 'node 127.0.0.1 is shutting down');
  assert.equal(
    Errors.resultTooLarge(10, "node 127.0.0.1's", 5).message,
    "the job's result encodes to 10 bytes, more than node 127.0.0.1's maximum message size of 5 bytes (--max-message-size)",
  );
  assert.equal(Errors.jobClusterClosed(), 'DispyError: job terminated as its cluster was closed');
  assert.equal(Errors.jobCancelledByClient(), 'DispyError: job terminated on request of the client');
  assert.equal(Errors.jobUndecodable(new Error('bad')), "DispyError: cannot decode the job's result: bad");
  // A job's exception text is the error's name and message, as a thrown DispyError prints.
  const e = new DispyError('DISPY_ERR_TIMEOUT', 'slow');
  assert.equal(jobException(e.message), `${e.name}: ${e.message}`);
});

test('the retriable codes are listed once, in the registry', () => {
  const retriable = (Object.keys(ERROR_CODES) as DispyErrorCode[]).filter(isRetriable).sort();
  assert.deepEqual(retriable, ['DISPY_ERR_CONNECTION', 'DISPY_ERR_NODE_BUSY', 'DISPY_ERR_TIMEOUT']);
  assert.equal(new DispyError('DISPY_ERR_NODE_BUSY').retriable, true);
  assert.equal(new DispyError('DISPY_ERR_AUTH').retriable, false);
});

test('no source file composes a job exception as a DispyError string, or the repeated texts by hand', () => {
  const offenders: string[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith(join('src', 'errors.ts'))) {
        readFileSync(p, 'utf8')
          .split('\n')
          .forEach((line, i) => {
            if (/['"`]DispyError: /.test(line) || /is closed`\)/.test(line.replace(/connection to node .* is closed/, '')))
              offenders.push(`${p.slice(ROOT.length)}:${i + 1}: ${line.trim()}`);
          });
      }
    }
  };
  walk(join(ROOT, 'src'));
  assert.deepEqual(offenders, []);
});
