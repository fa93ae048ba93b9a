import {
  CanceledError,
  DeadlineExceededError,
  FailedPreconditionError,
  GrpcCode,
  NotFoundError,
  UnavailableError,
} from '@berth/api';
import { Flag, MessageType, type ServerStream } from '../src';
import {
  ECHO,
  echoHandlers,
  echoService,
  echoType,
  type Harness,
  RawConnection,
  startEcho,
} from './fixtures/echo';

let h: Harness;
afterEach(async () => {
  await h?.cleanup();
});

async function collect(stream: AsyncIterable<any>): Promise<any[]> {
  const out: any[] = [];
  for await (const m of stream) out.push(m);
  return out;
}

describe('server streams', () => {
  it('yields every message, then ends', async () => {
    h = await startEcho();
    const got = await collect(h.client.stream(ECHO, 'Count', { n: 3 }));
    expect(got.map((m) => [m.text, m.big])).toEqual([
      ['item 0', 0],
      ['item 1', 1],
      ['item 2', 2],
    ]);
  });

  it('delivers the messages sent before a handler fails, then its typed error', async () => {
    h = await startEcho();
    const stream = h.client.stream(ECHO, 'Count', { n: 5, failAfter: 2 });
    expect((await stream.recv()).text).toBe('item 0');
    expect((await stream.recv()).text).toBe('item 1');
    await expect(stream.recv()).rejects.toThrow(new NotFoundError('item 2: not found'));
  });

  it('on the wire: request flagged remote-closed, data frames, then a closing no-data frame', async () => {
    h = await startEcho();
    const raw = await RawConnection.open(h.socket);
    const payload = Buffer.from(echoType('CountRequest').encode({ n: 2 }).finish());
    raw.request(1, { service: ECHO, method: 'Count', payload }, Flag.REMOTE_CLOSED);
    const frames = [await raw.next(), await raw.next(), await raw.next()];
    raw.close();
    expect(frames.map((f) => [f.streamId, f.type, f.flags])).toEqual([
      [1, MessageType.DATA, 0],
      [1, MessageType.DATA, 0],
      [1, MessageType.DATA, Flag.REMOTE_CLOSED | Flag.NO_DATA],
    ]);
    expect(echoType('EchoResponse').decode(frames[1].payload)).toMatchObject({ text: 'item 1' });
    expect(frames[2].payload.length).toBe(0);
  });

  it('comes through the service() helper as a ClientStream', async () => {
    h = await startEcho();
    const echo = h.client.service(ECHO, echoService());
    expect((await collect(echo.count({ n: 2 }))).length).toBe(2);
  });

  it('applies the deadline to the whole stream', async () => {
    h = await startEcho({
      ...echoHandlers,
      Count: async (stream: ServerStream) => {
        await stream.send({ text: 'first' });
        await new Promise(() => {});
      },
    });
    const stream = h.client.stream(ECHO, 'Count', {}, { timeoutMs: 50 });
    expect((await stream.recv()).text).toBe('first');
    await expect(stream.recv()).rejects.toBeInstanceOf(DeadlineExceededError);
  });

  it('cancel() stops the stream locally', async () => {
    h = await startEcho({
      ...echoHandlers,
      Count: () => new Promise(() => {}),
    });
    const stream = h.client.stream(ECHO, 'Count', {});
    stream.cancel();
    await expect(stream.recv()).rejects.toBeInstanceOf(CanceledError);
    expect(h.client.inFlight).toBe(0);
  });
});

describe('client streams', () => {
  it('sends messages, closes its side and gets the single response', async () => {
    h = await startEcho();
    const stream = h.client.stream(ECHO, 'Sum');
    await stream.send({ text: 'a', big: 1 });
    await stream.send({ text: 'b', big: 2 });
    await stream.send({ text: 'c', big: 39 });
    stream.closeSend();
    stream.closeSend();
    expect(await stream.recv()).toMatchObject({ text: 'a+b+c', big: 42 });
    expect(await stream.recv()).toBeUndefined();
    await expect(stream.send({})).rejects.toBeInstanceOf(FailedPreconditionError);
  });

  it('refuses send() on a method that does not stream requests', async () => {
    h = await startEcho();
    const stream = h.client.stream(ECHO, 'Count', { n: 1 });
    await expect(stream.send({})).rejects.toThrow('does not stream requests');
    expect(await collect(stream)).toHaveLength(1);
  });
});

describe('bidirectional streams', () => {
  it('answers each message as it comes', async () => {
    h = await startEcho();
    const stream = h.client.stream(ECHO, 'Chat');
    await stream.send({ text: 'one' });
    expect((await stream.recv()).text).toBe('re: one');
    await stream.send({ text: 'two' });
    expect((await stream.recv()).text).toBe('re: two');
    stream.closeSend();
    expect(await stream.recv()).toBeUndefined();
  });

  it('fails the stream with Unavailable when the connection drops', async () => {
    h = await startEcho();
    const stream = h.client.stream(ECHO, 'Chat');
    await stream.send({ text: 'one' });
    expect((await stream.recv()).text).toBe('re: one');
    await h.client.close();
    await expect(stream.recv()).rejects.toThrow(new UnavailableError('ttrpc: closed'));
    await expect(stream.send({ text: 'two' })).rejects.toBeInstanceOf(UnavailableError);
  });
});

describe('protocol errors', () => {
  it('answers INVALID_ARGUMENT to data on a stream that is not active', async () => {
    h = await startEcho();
    const raw = await RawConnection.open(h.socket);
    raw.write(7, MessageType.DATA, 0, Buffer.alloc(0));
    const res = await raw.response();
    raw.close();
    expect(res).toMatchObject({
      streamId: 7,
      code: GrpcCode.INVALID_ARGUMENT,
      message: 'StreamID is no longer active',
    });
  });
});
