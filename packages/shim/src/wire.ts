/**
 * Just enough protobuf wire format for the `start` path, which must not load a protobuf
 * library (every container start in a group pays for it): length-delimited fields out,
 * a flat field list in.
 */

export function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** A length-delimited field (string, bytes or embedded message) with its key. */
export function lengthField(fieldNumber: number, value: Buffer | string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value) : value;
  return Buffer.concat([varint((fieldNumber << 3) | 2), varint(bytes.length), bytes]);
}

export interface WireField {
  field: number;
  /** A varint's value, or the bytes of a length-delimited field. */
  value: number | Buffer;
}

/** The top-level fields of a message, in wire order (fixed32/64 fields are skipped). */
export function readFields(buf: Buffer): WireField[] {
  const out: WireField[] = [];
  let at = 0;
  const readVarint = (): number => {
    let result = 0;
    let mul = 1;
    for (;;) {
      if (at >= buf.length) throw new Error('protobuf: truncated varint');
      const b = buf[at++];
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
  };
  while (at < buf.length) {
    const key = readVarint();
    const field = Math.floor(key / 8);
    switch (key & 7) {
      case 0:
        out.push({ field, value: readVarint() });
        break;
      case 1:
        at += 8;
        break;
      case 2: {
        const len = readVarint();
        if (at + len > buf.length) throw new Error('protobuf: truncated field');
        out.push({ field, value: buf.subarray(at, at + len) });
        at += len;
        break;
      }
      case 5:
        at += 4;
        break;
      default:
        throw new Error(`protobuf: unsupported wire type ${key & 7}`);
    }
  }
  return out;
}

/** The last value of a field as a string ('' when absent). */
export function stringField(fields: readonly WireField[], field: number): string {
  let found = '';
  for (const f of fields) if (f.field === field && Buffer.isBuffer(f.value)) found = f.value.toString();
  return found;
}

/** The last value of a length-delimited field ('' when absent). */
export function bytesField(fields: readonly WireField[], field: number): Buffer | undefined {
  let found: Buffer | undefined;
  for (const f of fields) if (f.field === field && Buffer.isBuffer(f.value)) found = f.value;
  return found;
}

export function numberField(fields: readonly WireField[], field: number): number {
  let found = 0;
  for (const f of fields) if (f.field === field && typeof f.value === 'number') found = f.value;
  return found;
}
