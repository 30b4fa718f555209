#!/usr/bin/env node
/** The `dispyts` command: `node`, `scheduler`, `demo`, `hash-password` and `slurm-node` subcommands. */
import { DispyError } from '../errors.js';
import { MAIN_HELP as HELP } from './main-help.js';
import { nodeCommand } from './node-command.js';

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'node':
      return nodeCommand(rest);
    case 'scheduler':
      // Loaded on demand: the client library and the HTTP server are not the node's business.
      return (await import('./scheduler-command.js')).schedulerCommand(rest);
    case 'demo':
      return (await import('./demo-command.js')).demoCommand(rest);
    case 'slurm-node':
      return (await import('./slurm-node-command.js')).slurmNodeCommand(rest);
    case 'hash-password':
      return (await import('./hash-password-command.js')).hashPasswordCommand(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(HELP);
      return cmd === undefined ? 1 : 0;
    default:
      process.stderr.write(`dispyts: unknown command \`${cmd}\`\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof DispyError) process.stderr.write(`dispyts: ${err.code}: ${err.message}\n`);
    else if (err instanceof Error && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS'))
      process.stderr.write(`dispyts: ${err.message}\n`);
    else process.stderr.write(`dispyts: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 2;
  },
);
