/** `dispyts node`: runs a compute node daemon until SIGTERM/SIGINT. */
import { parseArgs } from 'node:util';
import { NodeDaemon } from '../node/node-daemon.js';
import { parseIntOption, parseSeconds, parseSize } from './args.js';

export const NODE_HELP = `Usage: dispyts node [options]

Runs a compute node: accepts one client program at a time and runs its jobs on this
machine's CPUs, one process group per running job.

Options:
  --host ADDR              address to listen on and the node's identity (default 127.0.0.1)
  --port N                 TCP port, 0 for any free one (default 9701)
  --cpus N                 CPUs to offer: 0 = all, negative = all but N (default 0)
  --name NAME              name shown to clients (default: the host name)
  --secret S               shared secret (default: the per-user file ~/.config/dispyts/secret)
  --dest-path-prefix DIR   where computations keep files (default: <tmpdir>/dispyts/node)
  --max-file-size SIZE     largest file a client may send, e.g. 10m (default 0 = unlimited)
  --zombie-interval S      seconds before a vanished client's jobs are terminated (default 3600)
  --serve N                exit after serving N clients (default -1 = never)
  --clean                  kill job processes a previous daemon here left and wipe its files
  --insecure               allow a non-loopback --host without --secret
  --cert-file FILE         serve TLS only, with this PEM certificate (and key, if it holds one)
  --key-file FILE          the PEM private key of --cert-file
  --ca-file FILE           mutual TLS: require client certificates signed by a CA in FILE
  --log-level LEVEL        trace, debug, info, warn, error (default info)
  --parent-pid PID         stop when process PID exits (the demo and tests use it)
  -h, --help               show this help

Prints "dispyts node ready on HOST:PORT ..." once serving. SIGTERM or SIGINT terminates the
running jobs (their clients see them Terminated) and exits. Clients verify a TLS node's
certificate against its address: it needs an IP subjectAltName for --host.
`;

export async function nodeCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      cpus: { type: 'string' },
      name: { type: 'string' },
      secret: { type: 'string' },
      'dest-path-prefix': { type: 'string' },
      'max-file-size': { type: 'string' },
      'zombie-interval': { type: 'string' },
      'pulse-interval': { type: 'string' },
      serve: { type: 'string' },
      clean: { type: 'boolean' },
      'parent-pid': { type: 'string' },
      insecure: { type: 'boolean' },
      'cert-file': { type: 'string' },
      'key-file': { type: 'string' },
      'ca-file': { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(NODE_HELP);
    return 0;
  }
  const parent = parseIntOption('parent-pid', values['parent-pid'], { min: 1 });
  const daemon = new NodeDaemon({
    host: values.host,
    port: parseIntOption('port', values.port, { min: 0, max: 65535 }),
    cpus: parseIntOption('cpus', values.cpus),
    name: values.name,
    secret: values.secret,
    destPathPrefix: values['dest-path-prefix'],
    maxFileSize: values['max-file-size'] === undefined ? undefined : parseSize('max-file-size', values['max-file-size']),
    zombieInterval: parseSeconds('zombie-interval', values['zombie-interval']),
    pulseInterval: parseSeconds('pulse-interval', values['pulse-interval']),
    serve: parseIntOption('serve', values.serve, { min: -1 }),
    clean: values.clean,
    insecure: values.insecure,
    certFile: values['cert-file'],
    keyFile: values['key-file'],
    caFile: values['ca-file'],
    logLevel: values['log-level'],
  });
  const { host, port } = await daemon.start();
  process.stdout.write(`dispyts node ready on ${host}:${port} (name ${daemon.name}, cpus ${daemon.cpus} of ${daemon.machineCpus}${daemon.tls === 'off' ? '' : daemon.tls === 'mutual' ? ', mutual TLS' : ', TLS'})\n`);
  const onSignal = (sig: NodeJS.Signals): void => {
    void daemon.stop(sig);
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  // A daemon started by another program (the demo, a test) must not outlive it, even when
  // that program is killed without a chance to stop it.
  if (parent !== undefined) {
    const watch = setInterval(() => {
      try {
        process.kill(parent, 0);
      } catch {
        clearInterval(watch);
        void daemon.stop('its parent process exited');
      }
    }, 500);
    watch.unref();
  }
  await daemon.stopped;
  return 0;
}
