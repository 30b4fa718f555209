/** `dispyts node`: runs a compute node daemon until SIGTERM/SIGINT. */
import { NodeDaemon } from '../node/node-daemon.js';
import type { NodeHttpServer } from '../node/node-httpd.js';
import { readSecretFile, resolveSecret } from '../protocol/secret.js';
import { parseIntOption, parseSeconds, parseSize, parseTrustedProxy } from './args.js';
import { stopWith } from './stop-with.js';
import { DispyError } from '../errors.js';
import {
  CA_FILE_OPTION,
  type CliCommand,
  HELP_OPTION,
  LIMIT_OPTIONS,
  LOG_LEVEL_OPTION,
  helpText,
  parseCommand,
  parseLogLevel,
} from './options.js';
import { DISCOVERY_MODES, type DiscoveryMode } from '../protocol/discovery.js';
import { checkNode } from '../node/node-check.js';

function parseDiscovery(text: string | undefined): DiscoveryMode | undefined {
  if (text === undefined) return undefined;
  if (!(DISCOVERY_MODES as readonly string[]).includes(text))
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `--discovery: expected broadcast, multicast or off, got \`${text}\``);
  return text as DiscoveryMode;
}

/** `dispyts node`'s options: its parser and `--help` come from this table. */
export const NODE_COMMAND = {
  usage: 'dispyts node [options]',
  intro: `Runs a compute node: accepts one client program at a time and runs its jobs on this
machine's CPUs, one process group per running job.`,
  column: 23,
  options: [
    { name: 'host', arg: 'ADDR', help: `address to listen on and the node's identity (default 127.0.0.1)` },
    { name: 'port', arg: 'N', help: 'TCP port, 0 for any free one (default 9701)' },
    { name: 'cpus', arg: 'N', help: 'CPUs to offer: 0 = all, negative = all but N (default 0)' },
    { name: 'name', arg: 'NAME', help: 'name shown to clients (default: the host name)' },
    { name: 'secret', arg: 'S', help: 'shared secret (default: the per-user file ~/.config/dispyts/secret)' },
    { name: 'secret-file', arg: 'FILE', help: 'read the shared secret from FILE (mode 600; keeps it out of `ps`)' },
    { name: 'dest-path-prefix', arg: 'DIR', help: 'where computations keep files (default: <tmpdir>/dispyts/node)' },
    ...LIMIT_OPTIONS,
    {
      name: 'shared-store-keys',
      arg: 'N',
      help: ["keys and lock names each computation's shared store (dispyNodeShared)", 'may hold on this node (default 10000)'],
    },
    { name: 'shared-store-size', arg: 'SIZE', help: 'bytes of keys and values it may hold, e.g. 1m (default 16m)' },
    {
      name: 'zombie-interval',
      arg: 'S',
      help: [
        `longest a vanished client's running jobs go on, if it keeps a`,
        'recover file (others end at its reconnect window) (default 3600)',
      ],
    },
    { name: 'serve', arg: 'N', help: 'exit after serving N clients (default -1 = never)' },
    {
      name: 'idle-exit',
      arg: 'S',
      help: [
        'exit when no client has been connected for S seconds, since the start',
        `or since the last client left; a vanished client's jobs are`,
        'terminated then (default: never; slurmNodes starts nodes with 60)',
      ],
    },
    { name: 'clean', help: 'kill job processes a previous daemon here left and wipe its files' },
    { name: 'insecure', help: 'allow a non-loopback --host without --secret or --secret-file' },
    { name: 'pulse-interval', arg: 'S', help: 'seconds between heartbeats to a client that asks for none (default 10)' },
    { name: 'cert-file', arg: 'FILE', help: 'serve TLS only, with this PEM certificate (and key, if it holds one)' },
    { name: 'key-file', arg: 'FILE', help: 'the PEM private key of --cert-file' },
    CA_FILE_OPTION,
    {
      name: 'discovery',
      arg: 'MODE',
      help: [
        'broadcast, multicast or off (default broadcast): with a non-loopback',
        `--host, hear clients' UDP discover requests on that interface's`,
        'broadcast address (multicast: group 239.255.97.5, TTL 1) at --port and',
        'announce the node to UDP port 9700 when it starts and when it becomes',
        'free. A loopback --host (the default) sends no UDP at all',
      ],
    },
    {
      name: 'httpd',
      arg: '[HOST:]PORT',
      help: [
        `serve this node's own page and JSON (status, client, jobs, CPUs; an`,
        'admin may change its CPUs or drain it) on PORT (0: any free one), on',
        `the node's address if it is a loopback one, else 127.0.0.1, unless`,
        `HOST says otherwise (default: off). Prints the page's login URL`,
      ],
    },
    {
      name: 'httpd-token',
      arg: 'TOKEN',
      help: [
        `the page's admin token, 16+ characters (default: derived from the`,
        `node's secret, so whoever has the secret can compute it)`,
      ],
    },
    { name: 'httpd-viewer-token', arg: 'T', help: 'a second token that shows the page without the admin controls' },
    { name: 'httpd-trusted-proxy', arg: 'A', help: 'the address of a reverse proxy in front of the page; needs' },
    { name: 'httpd-public-url', arg: 'URL', help: 'the URL browsers use through it (the same-origin check uses it)' },
    LOG_LEVEL_OPTION,
    { name: 'parent-pid', arg: 'PID', help: 'stop when process PID exits (the demo and tests use it)' },
    {
      name: 'check',
      help: [
        'do not serve: ask the node at --host:--port whether it serves, as a',
        'client would (authenticated with --secret or --secret-file, TLS with',
        '--cert-file), print its state and exit 0, or exit 1 saying why not',
        '(within 10 s). For health checks such as a Kubernetes exec probe',
      ],
    },
    HELP_OPTION,
  ],
  outro: `A client whose connections are gone (closed, or silent for 5 of its heartbeat intervals) and
that does not return within its reconnect window (10 s, or 5 x its pulseInterval) has its
queued jobs dropped and its running jobs terminated, and the next client is served. A client
that keeps a recover file has its running jobs go on until they end or --zombie-interval
passes; their results are kept on disk under --dest-path-prefix (at most 10,000 results or
256 MiB, oldest dropped first) until the client returns or a program calls recoverJobs() with
its recover file.

Prints "dispyts node ready on HOST:PORT ..." once serving. SIGTERM or SIGINT terminates the
running jobs (their clients see them Terminated) and exits. Clients verify a TLS node's
certificate against its address: it needs an IP subjectAltName for --host.`,
} as const satisfies CliCommand;

/** `dispyts node --help`. */
export const NODE_HELP = helpText(NODE_COMMAND);

/**
 * Runs `dispyts node ARGV` until the daemon stops. `onReady` (used by `dispyts slurm-node`) runs
 * once the daemon serves; if it throws, the daemon stops and the error is the command's.
 */
export async function nodeCommand(argv: string[], onReady?: (daemon: NodeDaemon) => Promise<void> | void): Promise<number> {
  const { values } = parseCommand(NODE_COMMAND, argv);
  if (values.help) {
    process.stdout.write(NODE_HELP);
    return 0;
  }
  const parent = parseIntOption('parent-pid', values['parent-pid'], { min: 1 });
  if (values.secret !== undefined && values['secret-file'] !== undefined)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', 'give --secret or --secret-file, not both');
  const secret = values['secret-file'] !== undefined ? readSecretFile(values['secret-file']) : values.secret;
  if (values.check) {
    const host = values.host ?? '127.0.0.1';
    const port = parseIntOption('port', values.port, { min: 1, max: 65535 });
    try {
      const n = await checkNode({
        host,
        port,
        secret: resolveSecret(secret),
        certFile: values['cert-file'],
        keyFile: values['key-file'],
        caFile: values['ca-file'],
      });
      const state = [n.busy ? 'serving a client' : 'free', ...(n.draining ? ['draining'] : [])].join(', ');
      process.stdout.write(`dispyts node ${n.ipAddr}:${n.port} serves (name ${n.name}, cpus ${n.cpuLimit} of ${n.cpus}, ${state})\n`);
      return 0;
    } catch (err) {
      const e = err instanceof DispyError ? err : new DispyError('DISPY_ERR_CONNECTION', (err as Error).message);
      process.stderr.write(`dispyts node --check: ${e.code}: ${e.message}\n`);
      return 1;
    }
  }
  // The page's HTTP stack is loaded only for --httpd: a daemon without it stays small.
  const page = values.httpd === undefined ? null : await import('../node/node-httpd.js');
  const httpd = values.httpd === undefined || !page ? null : page.parseHttpdAddress(values.httpd);
  if (httpd === null && (values['httpd-token'] !== undefined || values['httpd-viewer-token'] !== undefined)) {
    throw new DispyError('DISPY_ERR_INVALID_OPTION', '--httpd-token and --httpd-viewer-token need --httpd [host:]port');
  }
  if (httpd === null && (values['httpd-trusted-proxy'] !== undefined || values['httpd-public-url'] !== undefined))
    throw new DispyError('DISPY_ERR_INVALID_OPTION', '--httpd-trusted-proxy and --httpd-public-url need --httpd [host:]port');
  const trustedProxy = parseTrustedProxy(values['httpd-trusted-proxy'], values['httpd-public-url']);
  const daemon = new NodeDaemon({
    host: values.host,
    port: parseIntOption('port', values.port, { min: 0, max: 65535 }),
    cpus: parseIntOption('cpus', values.cpus),
    name: values.name,
    secret,
    destPathPrefix: values['dest-path-prefix'],
    maxFileSize: values['max-file-size'] === undefined ? undefined : parseSize('max-file-size', values['max-file-size']),
    maxMessageSize: values['max-message-size'] === undefined ? undefined : parseSize('max-message-size', values['max-message-size']),
    maxHandshakes: parseIntOption('max-handshakes', values['max-handshakes'], { min: 1 }),
    maxHandshakesPerPeer: parseIntOption('max-handshakes-per-peer', values['max-handshakes-per-peer'], { min: 1 }),
    zombieInterval: parseSeconds('zombie-interval', values['zombie-interval']),
    sharedStore: {
      maxKeys: parseIntOption('shared-store-keys', values['shared-store-keys'], { min: 1 }),
      maxBytes: values['shared-store-size'] === undefined ? undefined : parseSize('shared-store-size', values['shared-store-size']),
    },
    pulseInterval: parseSeconds('pulse-interval', values['pulse-interval']),
    serve: parseIntOption('serve', values.serve, { min: -1 }),
    idleExit: parseSeconds('idle-exit', values['idle-exit']),
    clean: values.clean,
    insecure: values.insecure,
    certFile: values['cert-file'],
    keyFile: values['key-file'],
    caFile: values['ca-file'],
    discovery: parseDiscovery(values.discovery),
    logLevel: parseLogLevel(values['log-level']),
  });
  const { host, port } = await daemon.start();
  // Before the ready line: whoever reads it may send SIGTERM at once and expect a clean stop.
  stopWith(daemon, parent);
  process.stdout.write(
    `dispyts node ready on ${host}:${port} (name ${daemon.name}, cpus ${daemon.cpus} of ${daemon.machineCpus}${daemon.tls === 'off' ? '' : daemon.tls === 'mutual' ? ', mutual TLS' : ', TLS'})\n`,
  );
  if (onReady) {
    try {
      await onReady(daemon);
    } catch (err) {
      await daemon.stop('it could not report that it is ready');
      throw err;
    }
  }
  if (httpd && page) {
    let server: NodeHttpServer;
    try {
      server = new page.NodeHttpServer(daemon, {
        ...httpd,
        token: values['httpd-token'],
        viewerToken: values['httpd-viewer-token'],
        secret: values['httpd-token'] === undefined ? resolveSecret(secret) : undefined,
        diskPath: values['dest-path-prefix'],
        ...(trustedProxy ? { trustedProxy } : {}),
      });
      const a = await server.listening;
      process.stdout.write(`dispyts node page on ${a.url} (sign in: ${a.loginUrl})\n`);
    } catch (err) {
      // The page was asked for: without it the node does not run.
      await daemon.stop('its page could not start');
      throw err;
    }
    void daemon.stopped.then(() => server.close());
  }
  await daemon.stopped;
  return 0;
}
