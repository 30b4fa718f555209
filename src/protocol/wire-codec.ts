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
