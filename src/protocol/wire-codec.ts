/**
 * msgpack for protocol messages (not user payloads): plain maps, no records, no extensions, so
 * every frame decodes on its own and any msgpack implementation can read it.
 */
import { Packr } from 'msgpackr';

const packr = new Packr({ useRecords: false, moreTypes: false, structuredClone: false, int64AsType: 'number', mapsAsObjects: true });

export function packMessage(value: unknown): Buffer {
  return packr.pack(value);
}

export function unpackMessage(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

/** Decodes a sequence of msgpack values, calling `each` with every value and its byte range. */
export function unpackMessages(bytes: Uint8Array, each: (value: unknown, start: number, end: number) => void): void {
  packr.unpackMultiple(bytes, (value: unknown, start?: number, end?: number) => {
    each(value, start ?? 0, end ?? bytes.length);
  });
}
