/**
 * Throwaway self-signed certificates made by the `openssl` CLI (as test/httpd-https.test.ts
 * makes its own), for tests that serve HTTPS: a key and a certificate naming the given DNS names
 * and IP addresses, valid for a day.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export interface TestCert {
  keyFile: string;
  certFile: string;
}

export function selfSignedCert(dir: string, name: string, san: { dns?: string[]; ip?: string[] }): TestCert {
  const keyFile = join(dir, `${name}-key.pem`);
  const certFile = join(dir, `${name}-cert.pem`);
  const alt = [...(san.dns ?? []).map((d) => `DNS:${d}`), ...(san.ip ?? []).map((i) => `IP:${i}`)].join(',');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-sha256',
      '-days',
      '1',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-subj',
      `/CN=${san.dns?.[0] ?? san.ip?.[0] ?? name}`,
      '-addext',
      `subjectAltName=${alt}`,
    ],
    { stdio: 'ignore' },
  );
  return { keyFile, certFile };
}
