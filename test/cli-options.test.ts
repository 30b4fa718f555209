/**
 * The CLI's option tables against what users read: each command's `--help` comes from its
 * table, README's "CLI reference" must copy it, and `--log-level` takes exactly pino's levels.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DispyError } from '../src/index.js';
import { DEMO_COMMAND, DEMO_HELP } from '../src/cli/demo-command.js';
import { HASH_PASSWORD_COMMAND, HASH_PASSWORD_HELP } from '../src/cli/hash-password-command.js';
import { COMMANDS, MAIN_HELP } from '../src/cli/main-help.js';
import { NODE_COMMAND, NODE_HELP } from '../src/cli/node-command.js';
import { type CliCommand, LOG_LEVELS, parseCommand, parseLogLevel } from '../src/cli/options.js';
import { SCHEDULER_COMMAND, SCHEDULER_HELP } from '../src/cli/scheduler-command.js';
import { SLURM_NODE_COMMAND, SLURM_NODE_HELP } from '../src/cli/slurm-node-command.js';
import { ROOT, TEST_SECRET, runCli } from './helpers/daemon.js';

const TABLES: Record<(typeof COMMANDS)[number]['name'], { cmd: CliCommand; help: string }> = {
  node: { cmd: NODE_COMMAND, help: NODE_HELP },
  scheduler: { cmd: SCHEDULER_COMMAND, help: SCHEDULER_HELP },
  demo: { cmd: DEMO_COMMAND, help: DEMO_HELP },
  'hash-password': { cmd: HASH_PASSWORD_COMMAND, help: HASH_PASSWORD_HELP },
  'slurm-node': { cmd: SLURM_NODE_COMMAND, help: SLURM_NODE_HELP },
};

/** The code block that follows "`dispyts ARGS --help`" in README's CLI reference, if any. */
function readmeBlock(readme: string, args: string): string | undefined {
  const at = readme.indexOf(`\`dispyts ${args}--help\``);
  if (at < 0) return undefined;
  const m = /^```\n([\s\S]*?)^```/m.exec(readme.slice(at));
  return m?.[1];
}

test("README's CLI reference copies every command's --help, as produced from its table", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const reference = readme.slice(readme.indexOf('## CLI reference'));
  assert.equal(readmeBlock(reference, ''), MAIN_HELP, 'dispyts --help');
  for (const { name } of COMMANDS) {
    const { help } = TABLES[name];
    assert.equal(readmeBlock(reference, `${name} `), help, `dispyts ${name} --help`);
  }
});

test('--help prints the table-made text, and the parser knows exactly the options the help lists', async () => {
  const runs = await Promise.all([runCli(['--help']), ...COMMANDS.map(({ name }) => runCli([name, '--help']))]);
  assert.equal(runs[0]!.out, MAIN_HELP);
  COMMANDS.forEach(({ name }, i) => {
    const run = runs[i + 1]!;
    assert.equal(run.code, 0, `${name} --help: ${run.err}`);
    assert.equal(run.out, TABLES[name].help, `dispyts ${name} --help`);
  });
  for (const { name } of COMMANDS) {
    const { cmd, help } = TABLES[name];
    const listed = [...help.matchAll(/^ {2}(?:-\w, )?--([\w-]+)/gm)].map((m) => m[1]);
    assert.deepEqual(
      listed,
      cmd.options.map((o) => o.name),
      `${name}: the help lists the table's options`,
    );
    for (const o of cmd.options) {
      const { values } = parseCommand(cmd, o.arg ? [`--${o.name}`, 'x'] : [`--${o.name}`]);
      assert.deepEqual((values as Record<string, unknown>)[o.name], o.arg ? (o.multiple ? ['x'] : 'x') : true, `${name} --${o.name}`);
    }
    assert.throws(() => parseCommand(cmd, ['--no-such-option']), /no-such-option/);
  }
});

test('--log-level takes the seven levels pino knows and refuses anything else with DISPY_ERR_INVALID_OPTION', async () => {
  assert.deepEqual([...LOG_LEVELS], ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);
  for (const level of LOG_LEVELS) assert.equal(parseLogLevel(level), level);
  for (const { cmd, help } of [TABLES.node, TABLES.scheduler]) {
    assert.ok(cmd.options.some((o) => o.name === 'log-level'));
    assert.match(help, /--log-level LEVEL +trace, debug, info, warn, error, fatal, silent \(default info\)/);
  }
  assert.throws(
    () => parseLogLevel('verbose'),
    (e: unknown) => e instanceof DispyError && e.code === 'DISPY_ERR_INVALID_OPTION' && /--log-level/.test(e.message),
  );
  // The daemons refuse it before starting, as a clear error rather than pino's.
  const [node, scheduler] = await Promise.all([
    runCli(['node', '--host', '127.0.0.137', '--port', '0', '--secret', TEST_SECRET, '--log-level', 'verbose']),
    runCli(['scheduler', '--host', '127.0.0.137', '--port', '0', '--node', '127.0.0.138', '--log-level', 'verbose']),
  ]);
  for (const run of [node, scheduler]) {
    assert.equal(run.code, 2, run.out + run.err);
    assert.match(
      run.err,
      /^dispyts: DISPY_ERR_INVALID_OPTION: --log-level: expected one of trace, debug, info, warn, error, fatal, silent, got `verbose`$/m,
    );
    assert.doesNotMatch(run.out, /ready on/);
  }
});
