/**
 * The API option docs against the option types: docs/options.md must be what the JSDoc of
 * JobClusterOptions, SharedJobClusterOptions and DispyHTTPServerOptions makes
 * (scripts/api-options.ts), every option has a `@default`, and each default README's "Coming
 * from dispy" table states for a cluster option is that `@default`. (README's CLI reference is
 * checked against the CLI tables by test/cli-options.test.ts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { API_OPTION_TYPES, apiOptions, OPTIONS_DOC, optionsDoc } from '../scripts/api-options.js';
import { ROOT } from './helpers/daemon.js';

test('docs/options.md is made from the option types (run scripts/api-options.ts --write after changing them)', () => {
  assert.equal(readFileSync(OPTIONS_DOC, 'utf8'), optionsDoc());
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.match(readme, /\]\(docs\/options\.md\)/, 'README links the option reference');
});

test('every API option has a default and a description', () => {
  for (const { cls, type, file } of API_OPTION_TYPES) {
    const options = apiOptions(file, type);
    assert.ok(options.length > 10, `${cls}: ${options.length} options`);
    for (const o of options) {
      assert.ok(o.default, `${cls} option ${o.name} has no @default`);
      assert.ok(o.summary.length > 10, `${cls} option ${o.name} has no description`);
    }
  }
});

test("the defaults README's dispy table states for cluster options are their @default", () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const table = readme.slice(readme.indexOf('## Coming from dispy'), readme.indexOf('\n## ', readme.indexOf('## Coming from dispy') + 5));
  const defaults = new Map<string, string>();
  for (const { type, file } of API_OPTION_TYPES.filter((t) => t.cls !== 'DispyHTTPServer'))
    for (const o of apiOptions(file, type)) if (!defaults.has(o.name) && o.default) defaults.set(o.name, o.default);
  let checked = 0;
  for (const row of table.split('\n').filter((l) => l.startsWith('| '))) {
    const ours = row.split(' | ')[1] ?? '';
    // `name` (default `X`) or `name` (`X`): a default in code.
    for (const m of ours.matchAll(/`(\w+)` \((?:default )?`([^`]+)`\)/g)) {
      const [, name, stated] = m as unknown as [string, string, string];
      const documented = defaults.get(name);
      if (documented === undefined) continue;
      checked++;
      assert.ok(documented.startsWith(stated), `README says ${name} defaults to ${stated}; its @default is ${documented}`);
    }
  }
  assert.ok(checked >= 2, `checked ${checked} stated defaults`);
});
