/**
 * Both cluster kinds validate their options with one table (src/client/option-rules.ts) and
 * agree where they used to differ: `host` is an IP address for both, and a job id longer than
 * 1024 characters travels with its job to no one (neither truncated for the scheduler nor sent
 * to nodes), as a truncated id would name another job.
 */
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster, SharedJobCluster } from '../src/index.js';
import { wireTag } from '../src/client/option-rules.js';
import { FakeScheduler } from './helpers/fake-scheduler.js';
import { until } from './helpers/daemon.js';

const SECRET = 'option-rules-test-secret-0123456';
const double = (x: number) => x * 2;

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

test('host must be an IP address, for JobCluster as for SharedJobCluster', () => {
  for (const make of [
    (host: unknown) => new JobCluster(double, { host: host as string, logLevel: 'silent' }),
    (host: unknown) => new SharedJobCluster(double, { host: host as string, logLevel: 'silent' }),
  ]) {
    assert.throws(() => make('localhost'), {
      code: 'DISPY_ERR_INVALID_OPTION',
      message: /^Expected `host` to be an IP address, got `"localhost"` \(string\)$/,
    });
    assert.throws(() => make(''), { code: 'DISPY_ERR_INVALID_OPTION', message: /Expected `host` to be an IP address/ });
    assert.throws(() => make(7), { code: 'DISPY_ERR_INVALID_OPTION', message: /Expected `host` to be an IP address, got `7` \(number\)/ });
  }
});

test('the options both kinds share are checked alike, with the same words', () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ depends: 'x' }, /Expected `depends` to be an array, got `"x"`/],
    [{ jobStatus: 1 }, /Expected `jobStatus` to be a function/],
    [{ reentrant: 'yes' }, /Expected `reentrant` to be true or false/],
    [{ cleanup: 'no' }, /Expected `cleanup` to be true, false or a function/],
    [{ maxRuntime: 0 }, /Expected `maxRuntime` to be a positive number of seconds, got `0`/],
    [{ maxFileSize: -1 }, /Expected `maxFileSize` to be a number of bytes >= 0/],
    [{ maxArgsSize: 0 }, /Expected `maxArgsSize` to be a number of bytes >= 1/],
    [{ keyFile: '' }, /Expected `keyFile` to be a file path/],
    [{ name: 'n'.repeat(257) }, /Expected `name` to be a non-empty string/],
    [{ isolate: 'node' }, /Expected `isolate` to be 'job'/],
  ];
  for (const [opts, message] of bad) {
    assert.throws(() => new JobCluster(double, { ...opts, logLevel: 'silent' }), { code: 'DISPY_ERR_INVALID_OPTION', message });
    assert.throws(() => new SharedJobCluster(double, { ...opts, logLevel: 'silent' }), { code: 'DISPY_ERR_INVALID_OPTION', message });
  }
  assert.throws(() => new JobCluster(double, null as never), { message: /Expected `options` to be an object, got `null`/ });
  assert.throws(() => new SharedJobCluster(double, 5 as never), { message: /Expected `options` to be an object, got `5`/ });
  // Each kind's own options.
  assert.throws(() => new JobCluster(double, { discovery: 'udp' as never }), {
    message: /Expected `discovery` to be 'broadcast', 'multicast' or 'off'/,
  });
  assert.throws(() => new SharedJobCluster(double, { schedulerPort: 0 }), {
    message: /Expected `schedulerPort` to be an integer from 1 to 65535/,
  });
});

test('a job id travels only as a string of at most 1024 characters or a finite number', () => {
  const max = 'i'.repeat(1024);
  assert.equal(wireTag(max), max);
  assert.equal(wireTag(`${max}x`), undefined);
  assert.equal(wireTag(7), 7);
  assert.equal(wireTag(Number.NaN), undefined);
  assert.equal(wireTag({ id: 1 }), undefined);
});

test('SharedJobCluster sends no tag for an id over 1024 characters (never a truncated one)', async () => {
  const fake = new FakeScheduler({ host: '127.0.0.229', secret: SECRET });
  await fake.listen();
  cleanups.push(() => fake.close());
  const c = new SharedJobCluster(double, { schedulerHost: fake.host, schedulerPort: fake.port, secret: SECRET, logLevel: 'silent' });
  cleanups.push(() => c.close({ terminate: true }));
  const long = 'L'.repeat(1500);
  c.submitJobId(long, 1);
  c.submitJobId('short', 2);
  await until(() => fake.jobs.length === 2, 10_000, 'both jobs at the scheduler');
  assert.equal(fake.jobs[0]!.tag, undefined, 'the long id is not sent');
  assert.equal(fake.jobs[1]!.tag, 'short');
});
