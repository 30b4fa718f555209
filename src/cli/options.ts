/**
 * One table per CLI command: the parser (`node:util` parseArgs), the `--help` text and the
 * README's "CLI reference" (checked by test/cli-options.test.ts) all come from it, so an option
 * is written once.
 */
import { parseArgs } from 'node:util';
import { DispyError } from '../errors.js';

/** One option of a command. */
export interface CliOption {
  /** The long name without dashes, e.g. `host`. */
  readonly name: string;
  /** The value's placeholder in the help (`--host ADDR`); absent for a flag. */
  readonly arg?: string;
  /** A one-letter alias, e.g. `h` for `-h`. */
  readonly short?: string;
  /** The option may be given several times; its value is then an array. */
  readonly multiple?: boolean;
  /** The help text, one string per line; lines after the first are indented to the description column. */
  readonly help: string | readonly string[];
}

/** A command's table. */
export interface CliCommand {
  /** What follows `Usage: ` in the help. */
  readonly usage: string;
  /** The paragraphs between the usage line and `Options:`. */
  readonly intro: string;
  /** Width of the option column (the longest usual `--flag ARG`). */
  readonly column: number;
  readonly options: readonly CliOption[];
  /** The paragraphs after the options, if any. */
  readonly outro?: string;
}

/** The size and handshake limits a node and a scheduler both take (same meaning, same text). */
export const LIMIT_OPTIONS = [
  { name: 'max-file-size', arg: 'SIZE', help: 'largest file a client may send, e.g. 10m (default 0 = unlimited)' },
  {
    name: 'max-message-size',
    arg: 'SIZE',
    help: [
      'largest message accepted from or sent to a client, e.g. 256m (default',
      '64m, at least 64k): job arguments and results must fit in it; clients',
      'are told, and a job whose result does not fit ends Terminated',
    ],
  },
  {
    name: 'max-handshakes',
    arg: 'N',
    help: [
      'connections allowed in their handshake (not yet authenticated) at',
      'once (default 64); before authentication a frame is 4 KiB at most',
    ],
  },
  { name: 'max-handshakes-per-peer', arg: 'N', help: 'of those, how many from one address (default 8)' },
] as const satisfies readonly CliOption[];

/** `--ca-file`: mutual TLS, for a node and a scheduler alike. */
export const CA_FILE_OPTION = {
  name: 'ca-file',
  arg: 'FILE',
  help: 'mutual TLS: require client certificates signed by a CA in FILE',
} as const satisfies CliOption;

/** `-h, --help`, which every command has. */
export const HELP_OPTION = { name: 'help', short: 'h', help: 'show this help' } as const satisfies CliOption;

type OptionValue<O extends CliOption> = O extends { arg: string } ? (O extends { multiple: true } ? string[] : string) : boolean;

/** The parsed values of a command with options `T`, typed by the table. */
export type CliValues<T extends readonly CliOption[]> = { [O in T[number] as O['name']]?: OptionValue<O> };

/** The `--help` text of `cmd`. */
export function helpText(cmd: CliCommand): string {
  const indent = ' '.repeat(2 + cmd.column + 2);
  const rows = cmd.options.map((o) => {
    const flag = `${o.short ? `-${o.short}, ` : ''}--${o.name}${o.arg ? ` ${o.arg}` : ''}`;
    const [first, ...rest] = typeof o.help === 'string' ? [o.help] : o.help;
    return [`  ${flag.padEnd(cmd.column)}  ${first}`, ...rest.map((line) => `${indent}${line}`)].join('\n');
  });
  return `Usage: ${cmd.usage}\n\n${cmd.intro}\n\nOptions:\n${rows.join('\n')}\n${cmd.outro ? `\n${cmd.outro}\n` : ''}`;
}

/** Parses `argv` by `cmd`'s table (unknown options and missing values are refused). */
export function parseCommand<T extends readonly CliOption[]>(
  cmd: CliCommand & { readonly options: T },
  argv: string[],
  allowPositionals = false,
): { values: CliValues<T>; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {};
  for (const o of cmd.options)
    options[o.name] = {
      type: o.arg ? 'string' : 'boolean',
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
  const { values, positionals } = parseArgs({ args: argv, strict: true, allowPositionals, options });
  return { values: values as CliValues<T>, positionals };
}

/** The levels pino knows, least to most severe, then `silent`. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** `--log-level LEVEL`, shared by the daemons' tables. */
export const LOG_LEVEL_OPTION = {
  name: 'log-level',
  arg: 'LEVEL',
  help: `${LOG_LEVELS.join(', ')} (default info)`,
} as const satisfies CliOption;

/** `--log-level`'s value, refused unless pino knows it (pino would throw its own error). */
export function parseLogLevel(text: string | undefined): LogLevel | undefined {
  if (text === undefined) return undefined;
  if (!(LOG_LEVELS as readonly string[]).includes(text))
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `--log-level: expected one of ${LOG_LEVELS.join(', ')}, got \`${text}\``);
  return text as LogLevel;
}
