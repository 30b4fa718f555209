/** `dispyts --help`: the table of subcommands (main.ts dispatches on the same names). */

/** The subcommands with their one-line summaries, in the order `--help` lists them. */
export const COMMANDS = [
  { name: 'node', help: ['run a compute node daemon on this machine'] },
  { name: 'scheduler', help: ['share nodes between several client programs (SharedJobCluster)'] },
  { name: 'demo', help: ['start two local nodes (127.0.0.2, 127.0.0.3) and run a cluster on them'] },
  {
    name: 'hash-password',
    help: ['print the scrypt hash of a password read from standard input (for users of', 'the HTTP server: --httpd-users, auth.users)'],
  },
  { name: 'slurm-node', help: ['run a node as a task of a Slurm job and report it ready (slurmNodes() uses it)'] },
] as const;

const COLUMN = 10;

/** `dispyts --help`. */
export const MAIN_HELP = `Usage: dispyts <command> [options]

Commands:
${COMMANDS.map(({ name, help }) => {
  const indent = ' '.repeat(2 + COLUMN + 2);
  // A name longer than the column gets its summary on the next lines.
  const lines =
    name.length > COLUMN
      ? [`  ${name}`, ...help.map((l) => indent + l)]
      : [`  ${name.padEnd(COLUMN)}  ${help[0]}`, ...help.slice(1).map((l) => indent + l)];
  return lines.join('\n');
}).join('\n')}

Run "dispyts <command> --help" for a command's options.
`;
