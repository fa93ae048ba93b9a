import { type AnyMessage, decodeAny, NotImplementedError, typeNameOfUrl } from '@berth/api';
import { isUnimplementedService } from '@berth/client';
import { QueuedStream, StreamManager } from '../src/services/streaming/manager';
import { receiveData, sendData } from '../src/services/transfer/data-stream';
import { ProgressReporter } from '../src/services/transfer/progress';

/** Two QueuedStreams wired back to back, as the daemon's and the client's ends of one stream. */
function pipe(): { a: QueuedStream; b: QueuedStream; sentByA: AnyMessage[]; sentByB: AnyMessage[] } {
  const sentByA: AnyMessage[] = [];
  const sentByB: AnyMessage[] = [];
  let a!: QueuedStream;
  let b!: QueuedStream;
  a = new QueuedStream(async (m) => {
    sentByA.push(m);
    b.push(m);
  });
  b = new QueuedStream(async (m) => {
    sentByB.push(m);
    a.push(m);
  });
  const closeA = a.close.bind(a);
  a.close = () => {
    closeA();
    b.end();
  };
  const closeB = b.close.bind(b);
  b.close = () => {
    closeB();
    a.end();
  };
  return { a, b, sentByA, sentByB };
}

describe('StreamManager', () => {
  it('finds a stream by namespace and id, refuses a duplicate, forgets it once unregistered', () => {
    const m = new StreamManager();
    const s = new QueuedStream(async () => undefined);
    const unregister = m.register({ namespace: 'a' }, 'x', s);
    expect(m.get({ namespace: 'a' }, 'x')).toBe(s);
    expect(() => m.get({ namespace: 'b' }, 'x')).toThrow('stream x: not found');
    expect(() => m.register({ namespace: 'a' }, 'x', s)).toThrow('stream x: already exists');
    m.register({ namespace: 'b' }, 'x', s);
    unregister();
    expect(() => m.get({ namespace: 'a' }, 'x')).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
    expect(m.size).toBe(1);
  });
});

describe('QueuedStream', () => {
  it('delivers in order, ends with undefined, and pauses a sender that runs ahead', async () => {
    let paused = 0;
    let resumed = 0;
    const s = new QueuedStream(async () => undefined, { pause: () => paused++, resume: () => resumed++ }, 4);
    const msg = (n: number): AnyMessage => ({ typeUrl: `t${n}`, value: Buffer.alloc(0) });
    for (let i = 0; i < 5; i++) s.push(msg(i));
    expect(paused).toBeGreaterThan(0);
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push((await s.recv())!.typeUrl);
    expect(got).toEqual(['t0', 't1', 't2', 't3', 't4']);
    expect(resumed).toBeGreaterThan(0);
    s.end();
    expect(await s.recv()).toBeUndefined();
  });

  it('fails a waiting recv, and refuses sends once closed', async () => {
    const s = new QueuedStream(async () => undefined);
    const waiting = s.recv();
    s.fail(new Error('client went away'));
    await expect(waiting).rejects.toThrow('client went away');
    const t = new QueuedStream(async () => undefined);
    t.close();
    await expect(t.send({ typeUrl: 'x', value: Buffer.alloc(0) })).rejects.toMatchObject({
      code: 'ERR_CANCELED',
    });
  });
});

describe('archive data over a stream', () => {
  it('moves every byte, the sender never exceeding the window the receiver granted', async () => {
    const { a, b, sentByA } = pipe();
    const data = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i < data.length; i++) data[i] = i % 251;
    const window = 256 * 1024;
    const received: Buffer[] = [];
    const receiving = (async () => {
      for await (const chunk of receiveData(a, window)) received.push(chunk);
    })();
    async function* source() {
      for (let o = 0; o < data.length; o += 100_000) yield data.subarray(o, o + 100_000);
    }
    await Promise.all([sendData(b, source()), receiving]);
    expect(Buffer.concat(received).equals(data)).toBe(true);
    // The receiver granted the window in WindowUpdates; sizes of Data never ran past it.
    const updates = sentByA.filter((m) => typeNameOfUrl(m.typeUrl).endsWith('WindowUpdate'));
    expect(updates.length).toBeGreaterThan(1);
    for (const u of updates) expect(decodeAny<{ update: number }>(u).update).toBe(window);
  });

  it('stops sending when the receiver goes away', async () => {
    const { a, b } = pipe();
    async function* endless() {
      for (;;) yield Buffer.alloc(64 * 1024);
    }
    const sending = sendData(b, endless());
    sending.catch(() => undefined);
    const receiving = receiveData(a, 64 * 1024);
    expect((await receiving.next()).value).toHaveLength(64 * 1024);
    await receiving.return(undefined);
    await expect(sending).rejects.toThrow('export stream: the receiver went away');
  });
});

describe('ProgressReporter', () => {
  it('coalesces updates of one object, always sends state changes, closes the stream last', async () => {
    const sent: Array<{ event: string; name: string; progress: number }> = [];
    let closed = false;
    const stream = {
      send: async (m: AnyMessage) => {
        sent.push(decodeAny(m));
      },
      recv: async () => undefined,
      close: () => {
        closed = true;
      },
    };
    const p = new ProgressReporter(stream, 60_000);
    p.emit({ event: 'waiting', name: 'layer-a', total: 10 });
    for (let i = 1; i <= 9; i++) p.update({ event: 'downloading', name: 'layer-a', progress: i, total: 10 });
    p.emit({ event: 'complete', name: 'layer-a', progress: 10, total: 10 });
    await p.close();
    expect(closed).toBe(true);
    expect(sent.map((s) => [s.event, s.progress])).toEqual([
      ['waiting', 0],
      ['downloading', 1],
      ['downloading', 9],
      ['complete', 10],
    ]);
  });

  it('keeps the transfer going when the client stops listening', async () => {
    const stream = {
      send: async () => {
        throw new Error('gone');
      },
      recv: async () => undefined,
      close: () => undefined,
    };
    const p = new ProgressReporter(stream);
    p.emit({ event: 'a' });
    await new Promise((r) => setImmediate(r));
    expect(p.active).toBe(false);
    p.emit({ event: 'b' });
    await expect(p.close()).resolves.toBeUndefined();
  });
});

describe('isUnimplementedService', () => {
  it('tells a missing service from a transfer the daemon refused', () => {
    expect(
      isUnimplementedService(
        new NotImplementedError('unknown service containerd.services.transfer.v1.Transfer'),
      ),
    ).toBe(true);
    expect(
      isUnimplementedService(
        new NotImplementedError(
          'The server does not implement the method /containerd.services.streaming.v1.Streaming/Stream',
        ),
      ),
    ).toBe(true);
    expect(isUnimplementedService(new NotImplementedError('schema 1 manifests are not supported'))).toBe(
      false,
    );
    expect(isUnimplementedService(new Error('unknown service'))).toBe(false);
  });
});
