/**
 * deploy/: the Kubernetes manifests and the container recipe, checked offline (no cluster and
 * no image build here). Every manifest is parsed with `yaml` and validated against the
 * Kubernetes API schemas of `kubernetes-models`, unknown fields included (kubectl's strict field
 * validation refuses those); the pieces must fit together (probes, secret, ports, labels,
 * namespaces). The Dockerfile is read statically, and the command line a pod runs (the image's
 * entrypoint with the StatefulSet's arguments), its probe and the client example are run on
 * this machine against a real daemon on 127.0.0.131, with a temporary secret file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { StatefulSet } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { CLI, ROOT, runCli } from './helpers/daemon.js';

type Obj = Record<string, unknown>;
/** Manifests are walked as plain parsed YAML. */
type Any = any;

const MODELS: Record<string, { prototype: { validate(): void } }> = {
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/Job': Job,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
};

/**
 * Validates `doc` against its kind's schema. The generated validators read every property the
 * schema knows; a property of the manifest they never read is unknown to Kubernetes.
 */
function validate(doc: Obj): string[] {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const model = MODELS[key];
  if (!model) return [`no schema for ${key}`];
  const objects: { path: string; keys: string[]; read: Set<string> }[] = [];
  const track = (v: unknown, path: string): unknown => {
    if (Array.isArray(v)) return v.map((x, i) => track(x, `${path}[${i}]`));
    if (!v || typeof v !== 'object') return v;
    const copy: Obj = {};
    for (const [k, x] of Object.entries(v)) copy[k] = track(x, path ? `${path}.${k}` : k);
    const read = new Set<string>();
    objects.push({ path, keys: Object.keys(copy), read });
    return new Proxy(copy, {
      get(t, k, r) {
        if (typeof k === 'string') read.add(k);
        return Reflect.get(t, k, r);
      },
    });
  };
  const tracked = track(doc, '');
  try {
    model.prototype.validate.call(tracked);
  } catch (err) {
    return [`${key} ${(doc.metadata as Obj)?.name}: ${(err as Error).message}`];
  }
  const unknown: string[] = [];
  for (const o of objects) for (const k of o.keys) if (!o.read.has(k)) unknown.push(o.path ? `${o.path}.${k}` : k);
  // Only the outermost unknown field (what is inside it went unread too).
  return unknown.filter((p) => !unknown.some((q) => q !== p && p.startsWith(`${q}.`))).map((p) => `${key}: unknown field ${p}`);
}

function load(dir: string): { file: string; doc: Any }[] {
  const out: { file: string; doc: Any }[] = [];
  for (const name of readdirSync(dir)
    .filter((n) => /\.ya?ml$/.test(n))
    .sort()) {
    const text = readFileSync(join(dir, name), 'utf8');
    for (const d of parseAllDocuments(text)) {
      assert.deepEqual(d.errors, [], `${name} parses`);
      const doc = d.toJS();
      if (doc !== null) out.push({ file: name, doc });
    }
  }
  return out;
}

const DEPLOY = join(ROOT, 'deploy', 'kubernetes');
const nodeDocs = load(DEPLOY);
const clientDocs = load(join(DEPLOY, 'client'));
const find = (docs: { doc: Any }[], kind: string): Any => {
  const found = docs.filter((d) => d.doc.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0]!.doc;
};
const sts = find(nodeDocs, 'StatefulSet');
const container = sts.spec.template.spec.containers[0];
const args: string[] = container.args;
const arg = (name: string): string => {
  const i = args.indexOf(name);
  assert.ok(i >= 0 && i + 1 < args.length, `the node is started with ${name}`);
  return args[i + 1]!;
};

test('every manifest validates against the Kubernetes schemas, unknown fields included', () => {
  const kinds = [...nodeDocs, ...clientDocs].map((d) => `${d.file}:${d.doc.kind}`);
  for (const k of ['Namespace', 'Secret', 'StatefulSet', 'Service', 'NetworkPolicy', 'ConfigMap', 'Job'])
    assert.ok(
      kinds.some((x) => x.endsWith(`:${k}`)),
      `a ${k} among ${kinds.join(' ')}`,
    );
  for (const { file, doc } of [...nodeDocs, ...clientDocs]) assert.deepEqual(validate(doc), [], `${file} ${doc.kind}`);
  // The check itself can fail: a wrong type, a misspelt field.
  const bad = structuredClone(sts);
  bad.spec.template.spec.containers[0].readinessProbe.periodSeconds = 'often';
  assert.match(validate(bad).join(), /periodSeconds must be integer/);
  const typo = structuredClone(sts);
  typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe;
  assert.deepEqual(validate(typo), ['apps/v1/StatefulSet: unknown field spec.template.spec.containers[0].readinesProbe']);
});

test('the pieces fit: CPU request = --cpus, authenticated exec probes, the secret from its volume, a headless Service, a NetworkPolicy for the client namespace', () => {
  const ns = sts.metadata.namespace;
  const podLabels = sts.spec.template.metadata.labels;
  const port = Number(arg('--port'));
  // Resources: the CPU requested is what the node offers.
  const cpu = String(container.resources.requests.cpu);
  const cpus = cpu.endsWith('m') ? Number(cpu.slice(0, -1)) / 1000 : Number(cpu);
  assert.equal(cpus, Number(arg('--cpus')), 'requests.cpu matches --cpus');
  assert.ok(container.resources.limits?.memory && container.resources.requests.memory, 'memory requested and limited');
  assert.equal(arg('--host'), '$(POD_IP)', "the node's identity is its pod's address");
  assert.deepEqual(
    container.env.find((e: Any) => e.name === 'POD_IP'),
    { name: 'POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
  );
  assert.ok(!args.includes('--secret') && !args.includes('--insecure'), 'no secret on the command line, no --insecure');
  // The secret: a file of the Secret's volume, readable by the daemon's group only.
  const secretFile = arg('--secret-file');
  const secret = find(nodeDocs, 'Secret');
  const volume = sts.spec.template.spec.volumes.find((v: Any) => v.secret?.secretName === secret.metadata.name);
  assert.ok(volume, 'the Secret is mounted');
  const mount = container.volumeMounts.find((m: Any) => m.name === volume.name);
  assert.equal(mount.readOnly, true);
  assert.equal(secretFile, `${mount.mountPath}/${Object.keys(secret.stringData)[0]}`, '--secret-file is the Secret key');
  assert.equal(secret.metadata.namespace, ns);
  assert.equal(secret.stringData.secret, '', 'no secret value is committed');
  assert.equal(volume.secret.defaultMode, 0o440);
  // Non-root, with the secret's group.
  const pod = sts.spec.template.spec;
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.ok(pod.securityContext.runAsUser > 0 && pod.securityContext.fsGroup > 0);
  assert.equal(container.securityContext.allowPrivilegeEscalation, false);
  assert.equal(pod.automountServiceAccountToken, false, 'jobs get no API credentials');
  // Probes: both exec `dispyts node --check` with the mounted secret; nothing opens a bare connection.
  for (const name of ['readinessProbe', 'livenessProbe']) {
    const probe = container[name];
    assert.ok(probe?.exec, `${name} is an exec probe`);
    assert.ok(!probe.tcpSocket && !probe.httpGet && !probe.grpc, `${name} opens no unauthenticated connection`);
    const cmd = probe.exec.command.join(' ');
    assert.match(cmd, /dispyts node --check/);
    assert.match(cmd, /--host "\$POD_IP"/);
    assert.ok(cmd.includes(`--port ${port}`) && cmd.includes(`--secret-file ${secretFile}`), `${name}: the node's port and secret`);
    assert.ok(probe.timeoutSeconds >= 5, `${name}: time to start node`);
  }
  // The headless Service lists the ready pods at the node port.
  const svc = find(nodeDocs, 'Service');
  assert.equal(svc.spec.clusterIP, 'None');
  assert.equal(sts.spec.serviceName, svc.metadata.name);
  assert.equal(svc.metadata.namespace, ns);
  assert.notEqual(svc.spec.publishNotReadyAddresses, true);
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(podLabels[k], v, 'the Service selects the pods');
  assert.equal(svc.spec.ports[0].port, port);
  assert.equal(container.ports.find((p: Any) => p.name === svc.spec.ports[0].targetPort)?.containerPort, port);
  // The NetworkPolicy admits the client namespace, at the node port, and nothing else.
  const np = find(nodeDocs, 'NetworkPolicy');
  const job = find(clientDocs, 'Job');
  assert.equal(np.metadata.namespace, ns);
  for (const [k, v] of Object.entries(np.spec.podSelector.matchLabels)) assert.equal(podLabels[k], v);
  assert.deepEqual(np.spec.policyTypes, ['Ingress']);
  assert.deepEqual(np.spec.ingress, [
    {
      from: [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': job.metadata.namespace } } }],
      ports: [{ protocol: 'TCP', port }],
    },
  ]);
  const namespaces = nodeDocs.filter((d) => d.doc.kind === 'Namespace').map((d) => d.doc.metadata.name);
  assert.deepEqual(namespaces.sort(), [ns, job.metadata.namespace].sort());
  // The client follows the Service by its cluster name.
  const env = Object.fromEntries(job.spec.template.spec.containers[0].env.map((e: Any) => [e.name, e.value]));
  assert.equal(env.DISPYTS_NODES, `${svc.metadata.name}.${ns}.svc.cluster.local`);
  assert.equal(job.spec.template.spec.containers[0].image, container.image, 'the client runs from the node image');
});

const dockerfile = readFileSync(join(ROOT, 'deploy', 'container', 'Dockerfile'), 'utf8');
/** The instructions of the Dockerfile's final stage, continuation lines joined. */
function finalStage(): { op: string; rest: string }[] {
  const lines = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const out: { op: string; rest: string }[] = [];
  for (const l of lines) {
    const m = /^([A-Z]+)\s+(.*)$/.exec(l);
    assert.ok(m, `a Dockerfile instruction: ${l}`);
    if (m[1] === 'FROM') out.length = 0;
    out.push({ op: m[1]!, rest: m[2]! });
  }
  return out;
}

test('the Dockerfile: a Node LTS slim base, a non-root numeric USER, `dispyts node` as entrypoint, the secret from a file', () => {
  const version = /^ARG NODE_VERSION=(\d+)$/m.exec(dockerfile);
  assert.ok(version, 'the Node version is an ARG');
  assert.ok(Number(version[1]) >= 20 && Number(version[1]) % 2 === 0, `Node ${version[1]} is an LTS line`);
  const stage = finalStage();
  assert.match(stage[0]!.rest, /^node:\$\{NODE_VERSION\}-[a-z]+-slim$/, 'the slim Node image');
  const user = stage.filter((i) => i.op === 'USER').at(-1);
  assert.ok(user, 'a USER');
  const [uid, gid] = user.rest.split(':').map(Number);
  assert.ok(uid! > 0 && gid! > 0, `USER ${user.rest} is numeric and not root (runAsNonRoot can verify it)`);
  assert.equal(sts.spec.template.spec.securityContext.runAsUser, uid);
  const json = (op: string): string[] => JSON.parse(stage.find((i) => i.op === op)!.rest);
  const entry = json('ENTRYPOINT');
  assert.deepEqual(entry.slice(-2), ['dispyts', 'node']);
  assert.deepEqual(entry.slice(0, -2), ['/usr/bin/tini', '--'], 'under tini, which reaps what jobs leave');
  const cmd = json('CMD');
  assert.equal(cmd[cmd.indexOf('--secret-file') + 1], arg('--secret-file'), 'the default secret file is where the pod mounts it');
  assert.ok(!dockerfile.includes('--secret ') && !/^ENV .*SECRET/m.test(dockerfile), 'no secret in the image');
  assert.ok(!stage.some((i) => i.op === 'USER' && /^(0|root)\b/.test(i.rest)));
});

/** A port free on `host`. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function run(
  file: string,
  argv: string[],
  env: Record<string, string>,
  ms = 30_000,
): Promise<{ code: number | null; out: string; err: string }> {
  const p = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => p.kill('SIGKILL'), ms);
  return new Promise((resolve) =>
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    }),
  );
}

test("the pod's command line runs: the node starts from the secret file, its probe passes (and fails with a wrong secret), the client example runs on it", async () => {
  const host = '127.0.0.131';
  const tmp = mkdtempSync(join(tmpdir(), 'dispyts-k8s-'));
  // `dispyts` on PATH, as in the image.
  const bin = join(tmp, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'dispyts'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });
  const secretFile = join(tmp, 'secret');
  writeFileSync(secretFile, 'k8s-test-secret-0123456789abcdef\n');
  // As the kubelet leaves it with fsGroup: root's, group-readable (0600 when not root).
  chmodSync(secretFile, process.getuid?.() === 0 ? 0o440 : 0o600);
  const port = await freePort(host);
  const sub = (s: string): string =>
    s
      .replace('$(POD_IP)', host)
      .replace('$(POD_NAME)', 'dispyts-node-0')
      .replace(arg('--secret-file'), secretFile)
      .replace(arg('--dest-path-prefix'), join(tmp, 'state'))
      .replace(arg('--port'), String(port));
  const entry: string[] = JSON.parse(finalStage().find((i) => i.op === 'ENTRYPOINT')!.rest);
  const argv = [...entry.slice(entry.indexOf('--') + 1), ...args].map(sub);
  assert.deepEqual(argv.slice(0, 2), ['dispyts', 'node']);
  const daemon = spawn(join(bin, 'dispyts'), [...argv.slice(1), '--parent-pid', String(process.pid)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
  let stderr = '';
  daemon.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const clientScript = join(ROOT, 'test-results', `k8s-client-${process.pid}.mjs`);
  try {
    const ready = await new Promise<string>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`not ready in 60 s: ${stderr}`)), 60_000);
      daemon.stdout.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        if (out.includes('\n')) {
          clearTimeout(t);
          resolve(out);
        }
      });
      daemon.once('exit', (code) => reject(new Error(`exited with ${code}: ${stderr}`)));
    });
    assert.match(ready, new RegExp(`^dispyts node ready on ${host.replace(/\./g, '\\.')}:${port} \\(name dispyts-node-0, cpus 1 of `));
    // The probe, as the kubelet runs it (sh -c, POD_IP in the environment).
    const probeEnv = { PATH: `${bin}:${process.env.PATH}`, POD_IP: host };
    const probe = container.readinessProbe.exec.command.map(sub);
    const ok = await run(probe[0], probe.slice(1), probeEnv);
    assert.equal(ok.code, 0, ok.err);
    assert.match(
      ok.out,
      new RegExp(`^dispyts node ${host.replace(/\./g, '\\.')}:${port} serves \\(name dispyts-node-0, cpus 1 of 1, free\\)`),
    );
    assert.deepEqual(container.livenessProbe.exec.command, container.readinessProbe.exec.command);
    const wrong = join(tmp, 'wrong');
    writeFileSync(wrong, 'another-secret-0123456789abcdef', { mode: 0o600 });
    const refused = await run(probe[0], [probe[1], probe[2]!.replace(secretFile, wrong)], probeEnv);
    assert.equal(refused.code, 1);
    assert.match(refused.err, /^dispyts node --check: DISPY_ERR_AUTH: /);
    // The client example of deploy/kubernetes/client, run against this node by its address.
    mkdirSync(join(ROOT, 'test-results'), { recursive: true });
    writeFileSync(clientScript, find(clientDocs, 'ConfigMap').data['cluster.mjs']);
    // A loaded machine may take long to start a process that loads the whole package.
    const client = await run(
      process.execPath,
      [clientScript],
      { DISPYTS_NODES: host, DISPYTS_NODE_PORT: String(port), SECRET_FILE: secretFile, JOBS: '10' },
      120_000,
    );
    assert.equal(client.code, 0, `${client.err} (null: killed after 120 s)`);
    assert.match(client.out, new RegExp(`^10 of 10 jobs right, on 1 nodes: ${host.replace(/\./g, '\\.')}$`, 'm'));
    // A stopped node fails its probe.
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
    const down = await run(probe[0], probe.slice(1), probeEnv);
    assert.equal(down.code, 1);
    assert.match(down.err, /DISPY_ERR_CONNECTION: cannot connect/);
  } finally {
    if (daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((r) => daemon.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
    rmSync(clientScript, { force: true });
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('the Secret as committed (empty) stops the node with a clear error', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'dispyts-k8s-empty-'));
  try {
    const file = join(tmp, 'secret');
    writeFileSync(file, find(nodeDocs, 'Secret').stringData.secret, { mode: 0o600 });
    const r = await runCli(['node', '--host', '127.0.0.131', '--port', '0', '--secret-file', file]);
    assert.equal(r.code, 2);
    assert.match(r.err, /DISPY_ERR_SECRET_FILE: the secret file .* is empty/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
