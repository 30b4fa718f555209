/**
 * TLS for node connections: reading the PEM files with clear errors, the `node:tls` options of
 * both sides, and telling TLS failures (`DISPY_ERR_TLS`) from other connection errors. TLS only
 * wraps the socket; the authenticated Channel (HMAC handshake, per-frame MACs) runs inside it.
 *
 * Nodes are addressed by IP, so a node's certificate needs an IP subjectAltName: the client
 * verifies it with Node's default `checkServerIdentity`, which matches an IP host against the
 * certificate's IP SANs (and sends no SNI for an IP; `servername` is set only for names).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { DispyError } from '../errors.js';
import { HANDSHAKE_TIMEOUT } from './constants.js';

/** Paths of the PEM files; TLS is off when none is given. */
export interface TlsFiles {
  /** Certificate (chain) in PEM; may hold the private key as well. */
  certFile?: string;
  /** Private key in PEM (unencrypted). */
  keyFile?: string;
  /** CA certificate(s) the peer's certificate must chain to. */
  caFile?: string;
}

/** The contents of TlsFiles, checked to form a usable TLS context. */
export interface TlsMaterial {
  cert?: Buffer;
  key?: Buffer;
  ca?: Buffer;
  /** Digest of the contents: connections are shared only between equal TLS settings. */
  fingerprint: string;
  /** The files they came from, for messages. */
  files: TlsFiles;
}

/** How the options are spelled where they were given (API or command line). */
export interface TlsOptionNames {
  certFile: string;
  keyFile: string;
  caFile: string;
}

const API_NAMES: TlsOptionNames = { certFile: 'certFile', keyFile: 'keyFile', caFile: 'caFile' };
export const CLI_NAMES: TlsOptionNames = { certFile: '--cert-file', keyFile: '--key-file', caFile: '--ca-file' };

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----[\s\S]*?-----END \1-----/g;

/** The PEM blocks of a file, by label (`CERTIFICATE`, `PRIVATE KEY`, `EC PRIVATE KEY`, …). */
function pemBlocks(text: string): { label: string; pem: string }[] {
  return [...text.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1]!, pem: m[0] }));
}

function readPemFile(file: string, option: string, what: string): { label: string; pem: string }[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new DispyError('DISPY_ERR_TLS', `cannot read the TLS ${what} \`${option}\` ${file}: ${(err as Error).message}`, { cause: err });
  }
  const blocks = pemBlocks(text);
  if (blocks.length === 0)
    throw new DispyError('DISPY_ERR_TLS', `the TLS ${what} \`${option}\` ${file} is not a PEM file (no -----BEGIN ...----- block)`);
  return blocks;
}

const isCert = (b: { label: string }): boolean => b.label === 'CERTIFICATE' || b.label === 'TRUSTED CERTIFICATE';
const isKey = (b: { label: string }): boolean => b.label.endsWith('PRIVATE KEY');

/**
 * Reads and checks the TLS files; null when none is given (plain TCP). Throws a DispyError
 * (`DISPY_ERR_TLS` for unreadable or unusable files, `DISPY_ERR_INVALID_OPTION` for a missing
 * companion option) so a bad configuration fails at construction, not at the first connection.
 * A certificate file holding the private key as well needs no key file.
 *
 * @param side a node serves TLS, so it needs a certificate whenever a CA file is given.
 */
export function loadTls(files: TlsFiles, side: 'client' | 'node', names: TlsOptionNames = API_NAMES): TlsMaterial | null {
  const { certFile, keyFile, caFile } = files;
  if (!certFile && !keyFile && !caFile) return null;
  if (keyFile && !certFile)
    throw new DispyError('DISPY_ERR_INVALID_OPTION', `\`${names.keyFile}\` needs \`${names.certFile}\` (the certificate of that key)`);
  if (side === 'node' && !certFile) {
    throw new DispyError(
      'DISPY_ERR_INVALID_OPTION',
      `\`${names.caFile}\` needs \`${names.certFile}\`: a node serves TLS with its own certificate (and \`${names.caFile}\` then requires client certificates)`,
    );
  }
  const out: Omit<TlsMaterial, 'fingerprint'> = { files: { ...files } };
  if (certFile) {
    const blocks = readPemFile(certFile, names.certFile, 'certificate file');
    const certs = blocks.filter(isCert);
    if (certs.length === 0)
      throw new DispyError('DISPY_ERR_TLS', `the TLS certificate file \`${names.certFile}\` ${certFile} holds no CERTIFICATE`);
    out.cert = Buffer.from(`${certs.map((b) => b.pem).join('\n')}\n`);
    let keys = blocks.filter(isKey);
    if (keyFile) {
      keys = readPemFile(keyFile, names.keyFile, 'key file').filter(isKey);
      if (keys.length === 0) throw new DispyError('DISPY_ERR_TLS', `the TLS key file \`${names.keyFile}\` ${keyFile} holds no PRIVATE KEY`);
    } else if (keys.length === 0) {
      throw new DispyError(
        'DISPY_ERR_TLS',
        `the TLS certificate file \`${names.certFile}\` ${certFile} holds no private key: give \`${names.keyFile}\` too (or one PEM with both)`,
      );
    }
    out.key = Buffer.from(`${keys[0]!.pem}\n`);
  }
  if (caFile) {
    const certs = readPemFile(caFile, names.caFile, 'CA file').filter(isCert);
    if (certs.length === 0) throw new DispyError('DISPY_ERR_TLS', `the TLS CA file \`${names.caFile}\` ${caFile} holds no CERTIFICATE`);
    out.ca = Buffer.from(`${certs.map((b) => b.pem).join('\n')}\n`);
  }
  try {
    // Parses everything and checks that the key belongs to the certificate.
    tls.createSecureContext({ cert: out.cert, key: out.key, ca: out.ca });
  } catch (err) {
    const which = [
      certFile && `${names.certFile} ${certFile}`,
      keyFile && `${names.keyFile} ${keyFile}`,
      caFile && `${names.caFile} ${caFile}`,
    ]
      .filter(Boolean)
      .join(', ');
    throw new DispyError('DISPY_ERR_TLS', `unusable TLS files (${which}): ${(err as Error).message}`, { cause: err });
  }
  const h = createHash('sha256');
  for (const part of [out.cert, out.key, out.ca]) {
    h.update(part ? `${part.length}:` : '-:');
    if (part) h.update(part);
  }
  return { ...out, fingerprint: h.digest('hex').slice(0, 16) };
}

/**
 * Options of a node's `tls.createServer`: its certificate, and with a CA file, client
 * certificates requested and verified against it (mutual TLS). The node must refuse every
 * connection for which `clientCertRefusal` gives a reason: node:tls would drop an unverified
 * client without telling it why, so the verdict is left to the node, which tells the client.
 */
export function serverTlsOptions(m: TlsMaterial): tls.TlsOptions {
  return {
    cert: m.cert,
    key: m.key,
    ...(m.ca ? { ca: m.ca, requestCert: true, rejectUnauthorized: false } : { requestCert: false }),
    minVersion: 'TLSv1.2',
    handshakeTimeout: HANDSHAKE_TIMEOUT * 1000,
  };
}

/**
 * Why a node with a CA file (mutual TLS) must refuse this client, or null when the client's
 * certificate was verified against the CA. Always null without a CA file (no certificate asked).
 */
export function clientCertRefusal(m: TlsMaterial, socket: tls.TLSSocket): string | null {
  if (!m.ca || socket.authorized) return null;
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0)
    return 'the client sent no certificate, and this node requires one (give the cluster certFile/keyFile)';
  const subject = cert.subject?.CN ? ` (${String(cert.subject.CN)})` : '';
  return `the client certificate${subject} is not trusted: ${String(socket.authorizationError ?? 'verification failed')} (is it signed by a CA in the node's --ca-file?)`;
}

/**
 * Opens a client TLS socket to `host:port` (emits `secureConnect` once verified): the node's
 * certificate must chain to the CA file (the system CAs without one) and name `host` (an IP
 * SAN for an IP address); the client certificate is presented when given.
 */
export function connectTls(m: TlsMaterial, host: string, port: number, localAddress?: string): tls.TLSSocket {
  return tls.connect({
    host,
    port,
    ...(localAddress ? { localAddress } : {}),
    ...(net.isIP(host) ? {} : { servername: host }),
    ...(m.ca ? { ca: m.ca } : {}),
    ...(m.cert ? { cert: m.cert, key: m.key } : {}),
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2',
  });
}

/** OpenSSL certificate verification results, as Node reports them in `err.code`. */
const VERIFY_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_CRL',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECRYPT_CRL_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CRL_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CRL_NOT_YET_VALID',
  'CRL_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'ERROR_IN_CRL_LAST_UPDATE_FIELD',
  'ERROR_IN_CRL_NEXT_UPDATE_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
]);

const UNTRUSTED = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);
const REFUSED_OUR_CERT = new Set([
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED',
  'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
  'ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR',
]);
const NOT_TLS = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_HTTP_REQUEST',
  'ERR_SSL_HTTPS_PROXY_REQUEST',
  'ERR_SSL_UNKNOWN_PROTOCOL',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_RECORD_LENGTH_MISMATCH',
]);

type TlsErr = Error & { code?: string; reason?: string; library?: string };

/** Whether a socket error is a TLS failure (certificate, alert, protocol) rather than a network one. */
export function isTlsError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const e = err as TlsErr;
  const code = typeof e.code === 'string' ? e.code : '';
  return code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || VERIFY_CODES.has(code) || e.library === 'SSL routines';
}

/** A readable reason for a TLS failure, with OpenSSL's own words kept. */
export function describeTlsError(err: unknown): string {
  const e = err as TlsErr;
  const code = typeof e.code === 'string' ? e.code : '';
  const openssl = e.reason ?? e.message;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the peer's certificate does not name this address: ${e.reason ?? e.message} (nodes are addressed by IP: their certificates need an IP subjectAltName)`;
  }
  if (UNTRUSTED.has(code))
    return `the peer's certificate is not trusted: ${e.message} (it must chain to a CA in caFile, or to a system CA without caFile)`;
  if (VERIFY_CODES.has(code)) return `the peer's certificate was refused: ${e.message}`;
  if (code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED')
    return `the peer requires a client certificate (${openssl}): give certFile/keyFile`;
  if (code === 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE')
    return `the client sent no certificate, and this node requires one (${openssl})`;
  if (REFUSED_OUR_CERT.has(code)) return `the peer refused our certificate (${openssl}): is it signed by a CA the peer trusts?`;
  if (code === 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE')
    return `the peer refused the TLS handshake (${openssl}): does it require a client certificate?`;
  if (NOT_TLS.has(code)) return `the peer does not speak TLS (${openssl})`;
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'the TLS handshake timed out';
  return `TLS failure: ${e.message}`;
}

/** Wraps a TLS failure as `DISPY_ERR_TLS`, naming `context` (the peer). */
export function tlsError(err: unknown, context: string): DispyError {
  return new DispyError('DISPY_ERR_TLS', `${context}: ${describeTlsError(err)}`, { cause: err });
}
