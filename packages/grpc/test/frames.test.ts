import { getPackedSettings } from 'node:http2';
import hpack from 'hpack.js';
import { acceptableAuthority, ClientFrameFilter, ConnectionError, encodeLiterals } from '../src/frames';
import { ConnectionSniffer, serverSettingsFrame } from '../src/handoff';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
}

/** A client's HPACK encoder (with its dynamic table and Huffman coding, as real clients). */
function encoder() {
  const c = hpack.compressor.create({ table: { size: 4096 } }) as any;
  return (headers: [string, string][]) => {
    c.write(headers.map(([name, value]) => ({ name, value, huffman: true })));
    return c.read() as Buffer;
  };
}

interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
}

function parse(bytes: Buffer): Frame[] {
  const out: Frame[] = [];
  let off = 0;
  while (off < bytes.length) {
    const len = bytes.readUIntBE(off, 3);
    out.push({
      type: bytes[off + 3]!,
      flags: bytes[off + 4]!,
      stream: bytes.readUInt32BE(off + 5),
      payload: bytes.subarray(off + 9, off + 9 + len),
    });
    off += 9 + len;
  }
  return out;
}

/** Decodes header blocks the way nghttp2 would see them: a fresh table that must stay empty. */
function decodeAll(frames: Frame[]): [string, string][][] {
  const d = hpack.decompressor.create({ table: { size: 4096 } });
  const blocks: [string, string][][] = [];
  let block: Buffer[] = [];
  for (const f of frames) {
    if (f.type !== 1 && f.type !== 9) continue;
    block.push(f.payload);
    if (f.flags & 0x4) {
      d.write(Buffer.concat(block));
      d.execute();
      const hs: [string, string][] = [];
      for (let h = d.read(); h !== null; h = d.read()) hs.push([h.name, h.value]);
      blocks.push(hs);
      block = [];
    }
  }
  return blocks;
}

function run(input: Buffer, chunk: number, maxFrameSize?: number): Buffer {
  const f = new ClientFrameFilter({ maxFrameSize });
  const out: Buffer[] = [];
  for (let i = 0; i < input.length; i += chunk)
    f.push(input.subarray(i, i + chunk), (b) => out.push(Buffer.from(b)));
  return Buffer.concat(out);
}

describe('ClientFrameFilter', () => {
  const enc = encoder();
  const req1: [string, string][] = [
    [':method', 'POST'],
    [':path', '/a.B/C'],
    [':authority', '/run/berth/berth.sock'],
    ['content-type', 'application/grpc'],
    ['x-long', 'y'.repeat(40_000)],
  ];
  const req2: [string, string][] = [
    [':method', 'POST'],
    [':path', '/a.B/C'],
    [':authority', '/run/berth/berth.sock'],
    ['content-type', 'application/grpc'],
  ];
  const b1 = enc(req1);
  const b2 = enc(req2);
  const settings = frame(4, 0, 0, Buffer.alloc(0));
  const data = frame(0, 1, 1, Buffer.from('\0\0\0\0\x03abc'));
  // HEADERS padded and with priority, the block split over three CONTINUATIONs.
  const padded = Buffer.concat([
    Buffer.from([3]),
    Buffer.from([0, 0, 0, 0, 16]),
    b1.subarray(0, 10),
    Buffer.alloc(3),
  ]);
  const input = Buffer.concat([
    PREFACE,
    settings,
    frame(1, 0x8 | 0x20, 1, padded),
    frame(9, 0, 1, b1.subarray(10, 16_000)),
    frame(9, 0, 1, b1.subarray(16_000, 32_000)),
    frame(9, 0x4, 1, b1.subarray(32_000)),
    data,
    frame(1, 0x4 | 0x1, 3, b2),
  ]);

  test.each([1, 7, 9, 1000, input.length])(
    'rewrites every header block (input in chunks of %i bytes), passes the rest untouched',
    (chunk) => {
      const out = run(input, chunk);
      expect(out.subarray(0, PREFACE.length)).toEqual(PREFACE);
      const frames = parse(out.subarray(PREFACE.length));
      expect(frames[0]).toEqual({ type: 4, flags: 0, stream: 0, payload: Buffer.alloc(0) });
      const fix = (hs: [string, string][]) =>
        hs.map(([n, v]): [string, string] => [n, n === ':authority' ? 'localhost' : v]);
      expect(decodeAll(frames)).toEqual([fix(req1), fix(req2)]);
      // No padding or priority on rewritten HEADERS; frames within nghttp2's 16 KiB.
      const first = frames[1]!;
      expect(first.type).toBe(1);
      expect(first.flags & (0x8 | 0x20)).toBe(0);
      expect(frames.every((f) => f.payload.length <= 16384)).toBe(true);
      const dataAt = frames.findIndex((f) => f.type === 0);
      expect(frames[dataAt]).toEqual(parse(data)[0]);
      expect(frames[dataAt + 1]).toMatchObject({ type: 1, flags: 0x4 | 0x1, stream: 3 });
    },
  );

  test('a DATA frame inside a header block is a connection error', () => {
    const bad = Buffer.concat([PREFACE, frame(1, 0, 1, b2.subarray(0, 4)), data]);
    expect(() => run(bad, 64)).toThrow(ConnectionError);
  });

  test('garbage instead of the preface is a connection error', () => {
    expect(() => run(Buffer.from('GET / HTTP/1.1\r\n\r\nxxxxxx'), 5)).toThrow(
      'invalid HTTP/2 connection preface',
    );
  });

  test('a HEADERS frame over the max frame size is FRAME_SIZE_ERROR', () => {
    const big = Buffer.concat([PREFACE, frame(1, 0x4, 1, Buffer.alloc(20_000))]);
    expect(() => run(big, 100)).toThrow(expect.objectContaining({ code: 6 }));
  });

  test('a header block the HPACK decoder cannot read is COMPRESSION_ERROR', () => {
    const bad = Buffer.concat([PREFACE, frame(1, 0x4, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))]);
    expect(() => run(bad, 100)).toThrow(expect.objectContaining({ code: 9 }));
  });
});

describe('authority check and literal encoding', () => {
  test.each([
    ['localhost', true],
    ['localhost:1234', true],
    ['[::1]:80', true],
    ['user@host', true],
    ['/run/berth/berth.sock', false],
    ['%2Frun%2Fberth.sock', false],
    ['a b', false],
    ['unix:/run/x', false],
  ])('%s acceptable: %s', (v, ok) => {
    expect(acceptableAuthority(v)).toBe(ok);
  });

  test('literals round-trip through an independent decoder, long values included', () => {
    const hs: [string, string][] = [
      ['a', 'b'],
      ['x-long', 'z'.repeat(300)],
      ['x-bin', Buffer.from([0, 255, 128]).toString('latin1')],
    ];
    const d = hpack.decompressor.create({ table: { size: 4096 } });
    d.write(encodeLiterals(hs));
    d.execute();
    const out: [string, string][] = [];
    for (let h = d.read(); h !== null; h = d.read()) out.push([h.name, h.value]);
    expect(out).toEqual(hs);
  });
});

describe('ConnectionSniffer (the start of a connection)', () => {
  const ACK = frame(4, 1, 0, Buffer.alloc(0));
  const clientSettings = frame(4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]));
  const windowUpdate = frame(8, 0, 0, Buffer.from([0, 0x0f, 0, 0]));
  const request = (authority: string, enc = encoder()) => {
    const block = enc([
      [':method', 'POST'],
      [':path', '/x.Y/Z'],
      [':authority', authority],
    ]);
    // Split into HEADERS + CONTINUATION, as a client may.
    const cut = Math.floor(block.length / 2);
    return Buffer.concat([frame(1, 0, 1, block.subarray(0, cut)), frame(9, 0x4, 1, block.subarray(cut))]);
  };
  const data = frame(0, 1, 1, Buffer.from([0, 0, 0, 0, 0]));

  /** Feeds input by chunk until a verdict. */
  function sniff(input: Buffer, chunk: number) {
    const s = new ConnectionSniffer();
    for (let i = 0; i < input.length; i += chunk) {
      const v = s.push(Buffer.from(input.subarray(i, i + chunk)));
      if (v) return { v, consumed: Math.min(i + chunk, input.length) };
    }
    return undefined;
  }

  test.each([1, 7, 1 << 20])(
    'ACK then a localhost request (grpc-go): native, the ACK taken out, every other byte kept (chunks of %d)',
    (chunk) => {
      const before = Buffer.concat([PREFACE, clientSettings, windowUpdate]);
      const after = Buffer.concat([request('localhost'), data]);
      const r = sniff(Buffer.concat([before, ACK, after]), chunk)!;
      expect(r.v.path).toBe('native');
      // Bytes past the verdict stay in the socket; what was read comes back whole, less the ACK.
      const read = Buffer.concat([before, ACK, after]).subarray(0, r.consumed);
      expect(r.v.bytes.equals(Buffer.concat([before, read.subarray(before.length + ACK.length)]))).toBe(true);
    },
  );

  test('a request before the ACK (Node client): the verdict waits for the ACK, which is taken out', () => {
    const s = new ConnectionSniffer();
    const head = Buffer.concat([PREFACE, clientSettings, request('localhost'), data]);
    expect(s.push(head)).toBeUndefined();
    expect(s.authority).toBe('localhost');
    const v = s.push(Buffer.from(ACK))!;
    expect(v.path).toBe('native');
    expect(v.bytes.equals(head)).toBe(true);
  });

  test('a socket path as authority: the frame layer at once, the ACK still pending', () => {
    const s = new ConnectionSniffer();
    const head = Buffer.concat([PREFACE, clientSettings, request('/run/berth/berth.sock')]);
    expect(s.push(head)).toEqual({
      path: 'filter',
      bytes: head,
      ackPending: true,
      authority: '/run/berth/berth.sock',
    });
  });

  test.each([
    ['garbage', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
    ['a PING first', Buffer.concat([PREFACE, frame(6, 0, 0, Buffer.alloc(8))])],
    ['a GOAWAY first', Buffer.concat([PREFACE, frame(7, 0, 0, Buffer.alloc(8))])],
    ['DATA on stream 0', Buffer.concat([PREFACE, frame(0, 0, 0, Buffer.alloc(3))])],
    ['a second ACK', Buffer.concat([PREFACE, ACK, ACK])],
  ])('%s: the frame layer, which handles it as for any connection', (_what, input) => {
    expect(new ConnectionSniffer().push(input)?.path).toBe('filter');
  });

  test('the frame layer drops the first SETTINGS ACK when asked to, and only that one', () => {
    const input = Buffer.concat([PREFACE, clientSettings, request('/s.sock'), ACK, data, ACK]);
    for (const chunk of [1, 5, input.length]) {
      const f = new ClientFrameFilter({ dropSettingsAck: true });
      const out: Buffer[] = [];
      for (let i = 0; i < input.length; i += chunk)
        f.push(input.subarray(i, i + chunk), (b) => out.push(Buffer.from(b)));
      const acks = parse(Buffer.concat(out).subarray(PREFACE.length)).filter(
        (x) => x.type === 4 && x.flags & 1,
      );
      expect(acks).toHaveLength(1);
    }
  });

  test('the injected SETTINGS frame carries what the http2 server is configured with', () => {
    const f = serverSettingsFrame(getPackedSettings({ initialWindowSize: 16 << 20 }));
    expect(f.toString('hex')).toBe('000006040000000000000401000000');
  });
});
