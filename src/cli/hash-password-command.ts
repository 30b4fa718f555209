/**
 * `dispyts hash-password`: reads a password from standard input (never from the command line,
 * where `ps` and shell history would show it) and prints its scrypt hash for the
 * `passwordHash` of a user (`--httpd-users` files, `auth.users`).
 */
import { text } from 'node:stream/consumers';
import { parseArgs } from 'node:util';
import { DispyError } from '../errors.js';
import { MAX_PASSWORD, hashPassword } from '../httpd/users.js';

export const HASH_PASSWORD_HELP = `Usage: dispyts hash-password < password.txt

Reads one password from standard input (the first line; 8 to ${MAX_PASSWORD} characters) and
prints its scrypt hash, for "passwordHash" in a --httpd-users file or in auth.users:

  printf '%s' 'a long passphrase' | dispyts hash-password

Options:
  -h, --help   show this help
`;

export async function hashPasswordCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } } });
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
