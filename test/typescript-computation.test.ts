/**
 * Functions written in TypeScript and run under tsx reach nodes as esbuild's output, which
 * calls helpers such as `__name`; the runner's prelude must provide them.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { JobCluster } from '../src/index.js';
import { startNode, type TestNode, clusterOn } from './helpers/daemon.js';

let node: TestNode;
before(async () => {
  node = await startNode({ host: '127.0.0.29', cpus: 1 });
});
after(async () => {
  await node.stop();
});

enum Mode {
  Double = 2,
  Triple = 3,
}

interface Shape {
  area(): number;
}

class Square implements Shape {
  static created = 0;
  #side: number;
  readonly label: string;
  constructor(side: number, label = 'sq') {
    this.#side = side;
    this.label = label;
    Square.created++;
  }
  area(): number {
    return this.#side ** 2;
  }
}

function compute(side: number, mode: Mode): { area: number; scaled: number; labels: string[] } {
  const scale = (v: number): number => v * mode;
  class Local {
    tag = 'local';
  }
  function describe(s: Shape): string {
    return `${new Local().tag}:${s.area()}`;
  }
  const sq = new Square(side);
  return { area: sq.area(), scaled: scale(sq.area()), labels: [describe(sq), sq.label, String(Square.created)] };
}

test('a TypeScript function with nested named functions, classes and enums runs on a node', async () => {
  assert.match(compute.toString(), /__name\(/, 'tsx emitted __name calls (this test covers the prelude)');
  const cluster = new JobCluster(compute, { depends: [Square], ...clusterOn(node) });
  const r = await cluster.submit(3, Mode.Triple).wait();
  assert.deepEqual(r, { area: 9, scaled: 27, labels: ['local:9', 'sq', '1'] });
  await cluster.close();
});
