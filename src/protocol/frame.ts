/**
 * Length-prefixed frames: a 4-byte big-endian length then the body. The decoder checks the
 * announced length against the maximum before it allocates anything.
 */
import { DispyError } from '../errors.js';

/** Builds one frame (header + parts) in a single buffer so it goes out in one `write`. */
export function encodeFrame(...parts: Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(4 + len);
  out.writeUInt32BE(len, 0);
  let off = 4;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Incremental frame parser fed with socket chunks. */
export class FrameDecoder {
  /** Largest frame body accepted; may change between frames (a channel raises it once authenticated). */
  maxFrame: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(maxFrame: number) {
    this.maxFrame = maxFrame;
  }

  /** Bytes received but not yet returned as frames. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * Adds a chunk and returns every complete frame body in it. Throws DISPY_ERR_FRAME_TOO_LARGE
   * for an oversize length and DISPY_ERR_BAD_FRAME for an empty frame.
   */
  push(chunk: Buffer): Buffer[] {
    this.append(chunk);
    const frames: Buffer[] = [];
    for (let f = this.next(); f; f = this.next()) frames.push(f);
    return frames;
  }

  /** Adds a chunk without parsing it (see `next`). */
  append(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
  }

  /**
   * The next complete frame body, or null until more bytes come. The length is checked against
   * `maxFrame` as soon as its 4 bytes are here (throws as `push` does).
   */
  next(): Buffer | null {
    if (this.#buffered < 4) return null;
    const len = this.#peekLength();
    if (len > this.maxFrame) {
      throw new DispyError('DISPY_ERR_FRAME_TOO_LARGE', `frame of ${len} bytes exceeds the maximum of ${this.maxFrame}`);
    }
    if (len === 0) throw new DispyError('DISPY_ERR_BAD_FRAME', 'empty frame');
    if (this.#buffered < 4 + len) return null;
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#buffered);
    const rest = all.subarray(4 + len);
    this.#chunks = rest.length ? [rest] : [];
    this.#buffered = rest.length;
    return all.subarray(4, 4 + len);
  }

  #peekLength(): number {
    const first = this.#chunks[0]!;
    if (first.length >= 4) return first.readUInt32BE(0);
    const head = Buffer.concat(this.#chunks, Math.min(this.#buffered, 8));
    return head.readUInt32BE(0);
  }
}
