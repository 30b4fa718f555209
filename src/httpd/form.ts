/**
 * Request bodies of the POST endpoints: read with a size bound, then parsed as dispy's pages send
 * them (form-encoded; multipart and a flat JSON object are accepted too). Every field may repeat
 * (`uid=1&uid=2`); malformed input is a 400 with a DISPY_ERR_* code, never an exception.
 */
import { DispyError } from '../errors.js';

/** Largest request body accepted by default (bytes). */
export const DEFAULT_MAX_BODY = 64 * 1024;
/** Most fields one request may carry. */
export const MAX_FIELDS = 10_000;

/** A parsed form: every value of every field, in order. */
export class FormFields {
  readonly #fields: [string, string][];

  constructor(fields: [string, string][]) {
    this.#fields = fields;
  }

  /** The first value of `name`, or undefined. */
  get(name: string): string | undefined {
    for (const [k, v] of this.#fields) if (k === name) return v;
    return undefined;
  }

  /** Every value of `name`. */
  all(name: string): string[] {
    const out: string[] = [];
    for (const [k, v] of this.#fields) if (k === name) out.push(v);
    return out;
  }

  entries(): readonly [string, string][] {
    return this.#fields;
  }

  get size(): number {
    return this.#fields.length;
  }
}

/** Reads the body of `req`, refusing more than `max` bytes (413) before buffering them. */
export async function readBody(req: Request, max = DEFAULT_MAX_BODY): Promise<Uint8Array<ArrayBuffer>> {
  const declared = req.headers.get('content-length');
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > max) {
    throw new DispyError('DISPY_ERR_PAYLOAD_TOO_LARGE', `request body larger than ${max} bytes`);
  }
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > max) {
        await reader.cancel().catch(() => undefined);
        throw new DispyError('DISPY_ERR_PAYLOAD_TOO_LARGE', `request body larger than ${max} bytes`);
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof DispyError) throw err;
    throw new DispyError('DISPY_ERR_BAD_REQUEST', 'request body could not be read');
  }
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function text(body: Uint8Array): string {
  try {
    return utf8.decode(body);
  } catch {
    throw new DispyError('DISPY_ERR_BAD_REQUEST', 'request body is not valid UTF-8');
  }
}

function decodeComponent(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    throw new DispyError('DISPY_ERR_BAD_REQUEST', 'malformed percent-encoding in the form');
  }
}

function tooMany(): DispyError {
  return new DispyError('DISPY_ERR_BAD_REQUEST', `more than ${MAX_FIELDS} form fields`);
}

/** `a=1&b=2&a=3` with strict percent-decoding. */
export function parseUrlEncoded(s: string): FormFields {
  const fields: [string, string][] = [];
  if (s.length === 0) return new FormFields(fields);
  for (const part of s.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const k = decodeComponent(eq < 0 ? part : part.slice(0, eq));
    const v = eq < 0 ? '' : decodeComponent(part.slice(eq + 1));
    fields.push([k, v]);
    if (fields.length > MAX_FIELDS) throw tooMany();
  }
  return new FormFields(fields);
}

function scalar(v: unknown, name: string): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return String(v);
  throw new DispyError('DISPY_ERR_BAD_REQUEST', `field \`${name}\` must be a string, a number or a boolean`);
}

function parseJsonObject(s: string): FormFields {
  let v: unknown;
  try {
    v = JSON.parse(s);
  } catch {
    throw new DispyError('DISPY_ERR_BAD_REQUEST', 'request body is not valid JSON');
  }
  if (!v || typeof v !== 'object' || Array.isArray(v))
    throw new DispyError('DISPY_ERR_BAD_REQUEST', 'a JSON body must be an object of fields');
  const fields: [string, string][] = [];
  for (const [k, val] of Object.entries(v)) {
    // A field such as `nodes` may be given as a JSON value; it is passed on as JSON text.
    if (Array.isArray(val)) {
      if (k === 'nodes') fields.push([k, JSON.stringify(val)]);
      else for (const item of val) fields.push([k, scalar(item, k)]);
    } else fields.push([k, scalar(val, k)]);
    if (fields.length > MAX_FIELDS) throw tooMany();
  }
  return new FormFields(fields);
}

async function parseMultipart(body: Uint8Array<ArrayBuffer>, contentType: string): Promise<FormFields> {
  let data: FormData;
  try {
    data = await new Response(body, { headers: { 'content-type': contentType } }).formData();
  } catch {
    throw new DispyError('DISPY_ERR_BAD_REQUEST', 'malformed multipart/form-data body');
  }
  const fields: [string, string][] = [];
  for (const [k, v] of data.entries()) {
    if (typeof v !== 'string') throw new DispyError('DISPY_ERR_BAD_REQUEST', `field \`${k}\` must not be a file`);
    fields.push([k, v]);
    if (fields.length > MAX_FIELDS) throw tooMany();
  }
  return new FormFields(fields);
}

/** Reads and parses a POST body by its Content-Type (form-encoded when absent or unknown). */
export async function readForm(req: Request, max = DEFAULT_MAX_BODY): Promise<FormFields> {
  const body = await readBody(req, max);
  const contentType = (req.headers.get('content-type') ?? '').toLowerCase();
  if (contentType.startsWith('multipart/form-data')) return parseMultipart(body, req.headers.get('content-type')!);
  const s = text(body);
  if (contentType.startsWith('application/json')) return parseJsonObject(s);
  return parseUrlEncoded(s);
}
