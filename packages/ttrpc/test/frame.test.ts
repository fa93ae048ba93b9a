import { FrameDecoder, type FrameSink, MESSAGE_LENGTH_MAX } from '../src/frame';

interface Seen {
  frames: { streamId: number; type: number; flags: number; payload: string }[];
  oversized: { streamId: number; length: number }[];
}

function collector(): { sink: FrameSink; seen: Seen } {
  const seen: Seen = { frames: [], oversized: [] };
  return {
    seen,
    sink: {
      frame: (streamId, type, flags, payload) =>
        seen.frames.push({ streamId, type, flags, payload: payload.toString('hex') }),
      oversized: (streamId, _type, length) => seen.oversized.push({ streamId, length }),
    },
  };
}

function frame(streamId: number, type: number, flags: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(10);
  h.writeUInt32BE(payload.length, 0);
  h.writeUInt32BE(streamId, 4);
  h[8] = type;
  h[9] = flags;
  return Buffer.concat([h, payload]);
}

const stream = Buffer.concat([
  frame(1, 1, 0, Buffer.from('hello')),
  frame(3, 2, 0, Buffer.alloc(0)),
  frame(0xfffffffd, 3, 5, Buffer.from('0102030405060708090a0b0c', 'hex')),
]);
const expected = [
  { streamId: 1, type: 1, flags: 0, payload: Buffer.from('hello').toString('hex') },
  { streamId: 3, type: 2, flags: 0, payload: '' },
  { streamId: 0xfffffffd, type: 3, flags: 5, payload: '0102030405060708090a0b0c' },
];

describe('FrameDecoder', () => {
  it('decodes frames that arrive in one chunk', () => {
    const { sink, seen } = collector();
    const d = new FrameDecoder(sink);
    d.push(stream);
    expect(seen.frames).toEqual(expected);
    expect(d.idle).toBe(true);
  });

  it('decodes the same frames however the byte stream is cut', () => {
    for (let cut = 1; cut < stream.length; cut++) {
      const { sink, seen } = collector();
      const d = new FrameDecoder(sink);
      d.push(stream.subarray(0, cut));
      d.push(stream.subarray(cut));
      expect(seen.frames).toEqual(expected);
    }
    const { sink, seen } = collector();
    const d = new FrameDecoder(sink);
    for (let i = 0; i < stream.length; i++) {
      d.push(stream.subarray(i, i + 1));
      if (i < stream.length - 1) expect(d.idle).toBe(i === 14 || i === 24);
    }
    expect(seen.frames).toEqual(expected);
  });

  it('skips an oversized frame without buffering it and carries on', () => {
    const { sink, seen } = collector();
    const d = new FrameDecoder(sink);
    const h = Buffer.alloc(10);
    const length = MESSAGE_LENGTH_MAX + 1;
    h.writeUInt32BE(length, 0);
    h.writeUInt32BE(7, 4);
    h[8] = 1;
    d.push(h);
    const piece = Buffer.alloc(1 << 20);
    for (let sent = 0; sent < length; sent += piece.length) {
      d.push(piece.subarray(0, Math.min(piece.length, length - sent)));
    }
    expect(seen.oversized).toEqual([{ streamId: 7, length }]);
    d.push(frame(9, 1, 0, Buffer.from('ok')));
    expect(seen.frames).toEqual([
      { streamId: 9, type: 1, flags: 0, payload: Buffer.from('ok').toString('hex') },
    ]);
  });

  it('accepts a frame of exactly the maximum size', () => {
    const { sink, seen } = collector();
    const d = new FrameDecoder(sink);
    d.push(frame(1, 1, 0, Buffer.alloc(MESSAGE_LENGTH_MAX, 1)));
    expect(seen.oversized).toEqual([]);
    expect(seen.frames).toHaveLength(1);
    expect(seen.frames[0].payload.length).toBe(MESSAGE_LENGTH_MAX * 2);
  });
});
