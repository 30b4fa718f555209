/** `dispyts scheduler`: shares nodes between client programs until SIGTERM/SIGINT. */
import { readFileSync } from 'node:fs';
import { DISPATCH_POLICIES, type DispatchPolicy } from '../client/dispatcher.js';
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
import type { UserOptions } from '../httpd/users.js';
import { parseHttpdAddress } from '../node/node-httpd.js';
import { readSecretFile } from '../protocol/secret.js';
import { SchedulerDaemon } from '../scheduler/scheduler-daemon.js';
import { SchedulerMonitor } from '../scheduler/scheduler-monitor.js';
import { parseIntOption, parseSeconds, parseSize, parseTrustedProxy } from './args.js';
import { stopWith } from './stop-with.js';

/** `dispyts scheduler`'s options: its parser and `--help` come from this table. */
export const SCHEDULER_COMMAND = {
  usage: 'dispyts scheduler [options]',
  intro: `Lets several client programs (SharedJobCluster) share one set of nodes. Toward the nodes the
scheduler is one ordinary client; each client computation runs in it as a JobCluster, and a
policy decides which computation gets each free CPU.`,
  column: 23,
  options: [
    {
      name: 'node',
      arg: 'NODE',
      multiple: true,
      help: [
        'a node to share: host, IP, or wildcard such as 10.0.0.*, each',
        'optionally with :PORT (default 9701); repeat for more (default *:',
        'nodes discovered by UDP on the interface of --host; a loopback --host',
        'sends no UDP, so a loopback scheduler needs --node)',
      ],
    },
    { name: 'host', arg: 'ADDR', help: 'address clients connect to (default 127.0.0.1)' },
    { name: 'port', arg: 'N', help: 'port for clients, 0 for any free one (default 9702)' },
    { name: 'name', arg: 'NAME', help: 'name told to clients (default: the host name)' },
    { name: 'node-secret', arg: 'S', help: 'shared secret of the nodes (default: the per-user secret file)' },
    { name: 'node-secret-file', arg: 'FILE', help: 'read it from FILE (mode 600; keeps it out of `ps`)' },
    { name: 'cluster-secret', arg: 'S', help: 'secret clients authenticate with (default: the per-user secret file)' },
    { name: 'cluster-secret-file', arg: 'F', help: 'read it from F (mode 600)' },
    { name: 'node-cert-file', arg: 'FILE', help: `TLS toward nodes: this scheduler's client certificate (PEM)` },
    { name: 'node-key-file', arg: 'FILE', help: 'its private key' },
    { name: 'node-ca-file', arg: 'FILE', help: `CA the nodes' certificates chain to (turns TLS toward nodes on)` },
    { name: 'cert-file', arg: 'FILE', help: 'TLS toward clients: serve TLS only, with this certificate (PEM)' },
    { name: 'key-file', arg: 'FILE', help: 'its private key' },
    CA_FILE_OPTION,
    {
      name: 'pulse-interval',
      arg: 'S',
      help: [
        'seconds between heartbeats: asked of nodes (a node silent for 5 of',
        'them is declared dead) and sent to clients (default 10 s)',
      ],
    },
    { name: 'ping-interval', arg: 'S', help: 'seconds between re-discoveries of nodes (default: off)' },
    {
      name: 'zombie-interval',
      arg: 'S',
      help: [
        `at most this many seconds a vanished client's computations are`,
        'kept (no job of them starts meanwhile) before they are closed,',
        `queued jobs dropped and running ones terminated; a client's shorter`,
        `reconnectTimeout wins (default 3600; dispy's is in minutes)`,
      ],
    },
    ...LIMIT_OPTIONS,
    { name: 'dest-path-prefix', arg: 'DIR', help: `where clients' files are kept (default: <tmpdir>/dispyts/scheduler)` },
    { name: 'clean', help: 'delete what a previous scheduler at --host left there' },
    {
      name: 'policy',
      arg: 'P',
      help: [
        'which computation gets a free CPU: fsfs (the one whose earliest',
        'queued job was submitted first; default), fair (the one served least',
        'recently) or early (the one created first)',
      ],
    },
    {
      name: 'cooperative',
      help: [
        `let any computation change its nodes' CPUs (setNodeCpus, and the`,
        `monitor's Manage page); without it only exclusive computations may`,
      ],
    },
    { name: 'insecure', help: 'allow a non-loopback --host without a cluster secret' },
    {
      name: 'httpd',
      arg: '[HOST:]PORT',
      help: [`serve the monitor (DispyHTTPServer) over every client's cluster on`, 'PORT (0: any free one), on HOST (default 127.0.0.1)'],
    },
    {
      name: 'httpd-token',
      arg: 'TOKEN',
      help: [
        `the monitor's token, 16+ characters (default: generated and printed`,
        'when HOST is not loopback; loopback browsers need none)',
      ],
    },
    {
      name: 'httpd-users',
      arg: 'FILE',
      help: [
        'users who sign in to the monitor, a JSON file:',
        '{"alice": {"passwordHash": "scrypt$...", "role": "admin"},',
        ' "bob": {"passwordHash": "scrypt$...", "role": "viewer"}}',
        '(hashes from "dispyts hash-password"; viewers cannot act)',
      ],
    },
    { name: 'httpd-cert-file', arg: 'FILE', help: 'serve the monitor over HTTPS with this certificate (PEM)' },
    { name: 'httpd-key-file', arg: 'FILE', help: 'its private key' },
    {
      name: 'httpd-trusted-proxy',
      arg: 'A',
      help: [
        'the address of a reverse proxy in front of the monitor (nginx,',
        'Caddy): its requests are never trusted as loopback, the client',
        'address it forwards is honoured; needs --httpd-public-url',
      ],
    },
    {
      name: 'httpd-public-url',
      arg: 'URL',
      help: ['the URL browsers use through that proxy, e.g.', 'https://monitor.example.org (the same-origin check uses it)'],
    },
    LOG_LEVEL_OPTION,
    { name: 'parent-pid', arg: 'PID', help: 'stop when process PID exits (tests use it)' },
    HELP_OPTION,
  ],
  outro: `Prints "dispyts scheduler ready on HOST:PORT ..." once serving. An exclusive computation waits
until no other one is active and runs alone. A client that disconnects, or sends nothing for 5
of its heartbeat intervals, is gone: its computations start no job, and are closed at the end of
its reconnectTimeout (at most --zombie-interval) unless it comes back to them first.
SIGTERM or SIGINT closes every computation (clients see their jobs end with
DISPY_ERR_CLUSTER_CLOSED) and exits.`,
} as const satisfies CliCommand;

/** `dispyts scheduler --help`. */
export const SCHEDULER_HELP = helpText(SCHEDULER_COMMAND);

/** The users of `--httpd-users FILE` (checked in detail by the HTTP server). */
function readUsersFile(path: string): Record<string, UserOptions> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `--httpd-users: cannot read ${path} as JSON: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw) || Object.keys(raw).length === 0) {
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      `--httpd-users: ${path} must hold an object of users, e.g. {"alice": {"passwordHash": "scrypt$...", "role": "admin"}}`,
    );
  }
  return raw as Record<string, UserOptions>;
}

function parsePolicy(text: string | undefined): DispatchPolicy | undefined {
  if (text === undefined) return undefined;
  if (!(DISPATCH_POLICIES as readonly string[]).includes(text))
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `--policy: expected fsfs, fair or early, got \`${text}\``);
  return text as DispatchPolicy;
}

function secretOption(values: Record<string, unknown>, name: string): string | undefined {
  const direct = values[name] as string | undefined;
  const file = values[`${name}-file`] as string | undefined;
  if (direct !== undefined && file !== undefined)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `give --${name} or --${name}-file, not both`);
  return file !== undefined ? readSecretFile(file) : direct;
}

export async function schedulerCommand(argv: string[]): Promise<number> {
  const { values } = parseCommand(SCHEDULER_COMMAND, argv);
  if (values.help) {
    process.stdout.write(SCHEDULER_HELP);
    return 0;
  }
  const parent = parseIntOption('parent-pid', values['parent-pid'], { min: 1 });
  const httpd = values.httpd === undefined ? null : parseHttpdAddress(values.httpd);
  if (
    httpd === null &&
    (values['httpd-token'] !== undefined ||
      values['httpd-users'] !== undefined ||
      values['httpd-cert-file'] !== undefined ||
      values['httpd-key-file'] !== undefined)
  ) {
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      '--httpd-token, --httpd-users, --httpd-cert-file and --httpd-key-file need --httpd [host:]port',
    );
  }
  if (httpd === null && (values['httpd-trusted-proxy'] !== undefined || values['httpd-public-url'] !== undefined))
    throw new DispyError('DISPY_ERR_INVALID_OPTION', '--httpd-trusted-proxy and --httpd-public-url need --httpd [host:]port');
  const trustedProxy = parseTrustedProxy(values['httpd-trusted-proxy'], values['httpd-public-url']);
  const users = values['httpd-users'] === undefined ? undefined : readUsersFile(values['httpd-users']);
  const token = values['httpd-token'];
  if (token !== undefined && token.length < 16)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', '--httpd-token: expected at least 16 characters');
  const daemon = new SchedulerDaemon({
    nodes: values.node,
    host: values.host,
    port: parseIntOption('port', values.port, { min: 0, max: 65535 }),
    name: values.name,
    nodeSecret: secretOption(values, 'node-secret'),
    clusterSecret: secretOption(values, 'cluster-secret'),
    nodeCertFile: values['node-cert-file'],
    nodeKeyFile: values['node-key-file'],
    nodeCaFile: values['node-ca-file'],
    certFile: values['cert-file'],
    keyFile: values['key-file'],
    caFile: values['ca-file'],
    pulseInterval: parseSeconds('pulse-interval', values['pulse-interval']),
    pingInterval: parseSeconds('ping-interval', values['ping-interval']),
    zombieInterval: parseSeconds('zombie-interval', values['zombie-interval']),
    maxFileSize: values['max-file-size'] === undefined ? undefined : parseSize('max-file-size', values['max-file-size']),
    maxMessageSize: values['max-message-size'] === undefined ? undefined : parseSize('max-message-size', values['max-message-size']),
    maxHandshakes: parseIntOption('max-handshakes', values['max-handshakes'], { min: 1 }),
    maxHandshakesPerPeer: parseIntOption('max-handshakes-per-peer', values['max-handshakes-per-peer'], { min: 1 }),
    destPathPrefix: values['dest-path-prefix'],
    clean: values.clean,
    policy: parsePolicy(values.policy),
    cooperative: values.cooperative,
    insecure: values.insecure,
    logLevel: parseLogLevel(values['log-level']),
  });
  const { host, port } = await daemon.start();
  // Before the ready line: whoever reads it may send SIGTERM at once and expect a clean stop.
  stopWith(daemon, parent);
  const nodes = daemon.nodes.map((n) => (n.port === 9701 ? n.host : `${n.host}:${n.port}`)).join(', ');
  process.stdout.write(
    `dispyts scheduler ready on ${host}:${port} (policy ${daemon.policy}, nodes ${nodes}${daemon.cooperative ? ', cooperative' : ''}${daemon.tls === 'off' ? '' : daemon.tls === 'mutual' ? ', mutual TLS' : ', TLS'})\n`,
  );
  let monitor: SchedulerMonitor | null = null;
  if (httpd) {
    try {
      monitor = new SchedulerMonitor(daemon, {
        host: httpd.host ?? '127.0.0.1',
        port: httpd.port,
        ...(token !== undefined || users !== undefined
          ? { auth: { ...(token !== undefined ? { token } : {}), ...(users !== undefined ? { users } : {}) } }
          : {}),
        ...(values['httpd-cert-file'] !== undefined ? { certFile: values['httpd-cert-file'] } : {}),
        ...(values['httpd-key-file'] !== undefined ? { keyFile: values['httpd-key-file'] } : {}),
        ...(trustedProxy ? { trustedProxy } : {}),
        logger: daemon.log.child({ component: 'httpd' }),
      });
      const a = await monitor.listening;
      const t = monitor.server.token;
      process.stdout.write(`dispyts scheduler monitor on ${a.url}${t && token === undefined ? ` (sign in: ${a.url}/?token=${t})` : ''}\n`);
    } catch (err) {
      // The monitor was asked for: without it the scheduler does not run.
      await daemon.stop('its monitor could not start');
      throw err;
    }
  }
  await daemon.stopped;
  await monitor?.close();
  return 0;
}
