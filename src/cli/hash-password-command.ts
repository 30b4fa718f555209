/**
 * `dispyts hash-password`: reads a password from standard input (never from the command line,
 * where `ps` and shell history would show it) and prints its scrypt hash for the
 * `passwordHash` of a user (`--httpd-users` files, `auth.users`).
 */
import { text } from 'node:stream/consumers';
import { DispyError } from '../errors.js';
import { MAX_PASSWORD, hashPassword } from '../httpd/users.js';
import { type CliCommand, HELP_OPTION, helpText, parseCommand } from './options.js';

/** `dispyts hash-password`'s options: its parser and `--help` come from this table. */
export const HASH_PASSWORD_COMMAND = {
  usage: 'dispyts hash-password < password.txt',
  intro: `Reads one password from standard input (the first line; 8 to ${MAX_PASSWORD} characters) and
prints its scrypt hash, for "passwordHash" in a --httpd-users file or in auth.users:

  printf '%s' 'a long passphrase' | dispyts hash-password`,
  column: 11,
  options: [HELP_OPTION],
} as const satisfies CliCommand;

/** `dispyts hash-password --help`. */
export const HASH_PASSWORD_HELP = helpText(HASH_PASSWORD_COMMAND);

export async function hashPasswordCommand(argv: string[]): Promise<number> {
  const { values } = parseCommand(HASH_PASSWORD_COMMAND, argv);
  if (values.help) {
    process.stdout.write(HASH_PASSWORD_HELP);
    return 0;
  }
  const input = await text(process.stdin);
  const password = input.split(/\r?\n/)[0] ?? '';
  if (password.length < 8 || password.length > MAX_PASSWORD) {
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      `hash-password: expected a password of 8 to ${MAX_PASSWORD} characters on standard input, got ${password.length}`,
    );
  }
  process.stdout.write(`${await hashPassword(password)}\n`);
  return 0;
}
