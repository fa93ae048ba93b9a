/**
 * The ttrpc envelopes (proto/ttrpc.proto), encoded by hand with protobufjs's
 * Writer/Reader. The caller's message is encoded straight into the envelope's writer,
 * behind 10 bytes reserved for the frame header: a request or response is one buffer,
 * written with one write(), with no intermediate copy.
 */
import { InvalidArgumentError } from '@berth/api';
import { Reader, type Type, Writer } from 'protobufjs';
import { HEADER_LENGTH } from './frame';

export interface KeyValue {
  key: string;
  value: string;
}

export interface RequestEnvelope {
  service: string;
  method: string;
  payload: Buffer;
  /** Whether the payload field was present on the wire (Go ttrpc tells nil from empty). */
  hasPayload: boolean;
  timeoutNano: number;
  metadata: KeyValue[];
}

export interface ResponseEnvelope {
  code: number;
  message: string;
  payload: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** A payload: a plain object to encode with `type`, or bytes already encoded. */
export type Payload = { type: Type; value: object } | Buffer | undefined;

/** A writer whose first HEADER_LENGTH bytes are zeros, to be overwritten by the header. */
function frameWriter(): Writer {
  const w = Writer.create();
  for (let i = 0; i < HEADER_LENGTH; i++) w.uint32(0); // a zero varint is one byte
  return w;
}

function writePayload(w: Writer, tag: number, payload: Payload): void {
  if (payload === undefined) return;
  w.uint32(tag);
  if (Buffer.isBuffer(payload)) {
    w.bytes(payload);
    return;
  }
  w.fork();
  payload.type.encode(payload.type.fromObject(payload.value as Record<string, unknown>), w);
  w.ldelim();
}

/**
 * A request frame with its header left blank (see channel.sendFrame). Field numbers:
 * service 1, method 2, payload 3, timeout_nano 4, metadata 5.
 */
export function encodeRequestFrame(
  service: string,
  method: string,
  payload: Payload,
  timeoutNano: number,
  metadata: readonly KeyValue[] | undefined,
): Buffer {
  const w = frameWriter();
  w.uint32(10).string(service);
  w.uint32(18).string(method);
  writePayload(w, 26, payload);
  if (timeoutNano > 0) w.uint32(32).int64(timeoutNano);
  if (metadata !== undefined) {
    for (const kv of metadata) {
      w.uint32(42).fork();
      if (kv.key !== '') w.uint32(10).string(kv.key);
      if (kv.value !== '') w.uint32(18).string(kv.value);
      w.ldelim();
    }
  }
  return w.finish() as Buffer;
}

/**
 * A response frame with its header left blank: status (google.rpc.Status: code 1,
 * message 2) as field 1, payload as field 2. The status is always present, as Go's
 * server sends it.
 */
export function encodeResponseFrame(code: number, message: string, payload: Payload): Buffer {
  const w = frameWriter();
  w.uint32(10).fork();
  if (code !== 0) w.uint32(8).int32(code);
  if (message !== '') w.uint32(18).string(message);
  w.ldelim();
  writePayload(w, 18, payload);
  return w.finish() as Buffer;
}

const WIRE_VARINT = 0;
const WIRE_LDELIM = 2;

function corrupt(what: string, detail: string): InvalidArgumentError {
  return new InvalidArgumentError(`ttrpc: malformed ${what}: ${detail}`);
}

/** Reads a length-delimited field as a view into the reader's buffer, checking its bounds. */
function readView(r: Reader, buf: Buffer, what: string): Buffer {
  const len = r.uint32();
  const start = r.pos;
  if (start + len > r.len) throw corrupt(what, `field of ${len} bytes runs past the end`);
  r.pos = start + len;
  return buf.subarray(start, start + len);
}

/** protobufjs's string() silently truncates a short field; this one refuses to. */
function readString(r: Reader, buf: Buffer, what: string): string {
  return readView(r, buf, what).toString('utf8');
}

function readInt64(r: Reader): number {
  const v = r.int64() as unknown as number | { toNumber(): number };
  return typeof v === 'number' ? v : v.toNumber();
}

function decodeKeyValue(buf: Buffer): KeyValue {
  const r = Reader.create(buf);
  let key = '';
  let value = '';
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === 1 && (tag & 7) === WIRE_LDELIM) key = readString(r, buf, 'metadata');
    else if (field === 2 && (tag & 7) === WIRE_LDELIM) value = readString(r, buf, 'metadata');
    else r.skipType(tag & 7);
  }
  return { key, value };
}

export function decodeRequest(buf: Buffer): RequestEnvelope {
  const out: RequestEnvelope = {
    service: '',
    method: '',
    payload: EMPTY,
    hasPayload: false,
    timeoutNano: 0,
    metadata: [],
  };
  try {
    const r = Reader.create(buf);
    while (r.pos < r.len) {
      const tag = r.uint32();
      const wire = tag & 7;
      switch (tag >>> 3) {
        case 1:
          if (wire !== WIRE_LDELIM) break;
          out.service = readString(r, buf, 'request');
          continue;
        case 2:
          if (wire !== WIRE_LDELIM) break;
          out.method = readString(r, buf, 'request');
          continue;
        case 3:
          if (wire !== WIRE_LDELIM) break;
          out.payload = readView(r, buf, 'request');
          out.hasPayload = true;
          continue;
        case 4:
          if (wire !== WIRE_VARINT) break;
          out.timeoutNano = readInt64(r);
          continue;
        case 5:
          if (wire !== WIRE_LDELIM) break;
          out.metadata.push(decodeKeyValue(readView(r, buf, 'request')));
          continue;
      }
      r.skipType(wire);
    }
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    throw corrupt('request', (err as Error).message);
  }
  return out;
}

function decodeStatus(buf: Buffer, out: ResponseEnvelope): void {
  const r = Reader.create(buf);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const wire = tag & 7;
    const field = tag >>> 3;
    if (field === 1 && wire === WIRE_VARINT) out.code = r.int32();
    else if (field === 2 && wire === WIRE_LDELIM) out.message = readString(r, buf, 'response');
    else r.skipType(wire); // details (Any) are not surfaced
  }
}

export function decodeResponse(buf: Buffer): ResponseEnvelope {
  const out: ResponseEnvelope = { code: 0, message: '', payload: EMPTY };
  try {
    const r = Reader.create(buf);
    while (r.pos < r.len) {
      const tag = r.uint32();
      const wire = tag & 7;
      const field = tag >>> 3;
      if (field === 1 && wire === WIRE_LDELIM) decodeStatus(readView(r, buf, 'response'), out);
      else if (field === 2 && wire === WIRE_LDELIM) out.payload = readView(r, buf, 'response');
      else r.skipType(wire);
    }
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw err;
    throw corrupt('response', (err as Error).message);
  }
  return out;
}
