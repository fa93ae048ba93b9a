import { decodeAny } from '@berth/api';
import { Exchange, type ExchangeEnvelope, validateTopic } from '@berth/daemon';

async function take(sub: AsyncIterable<ExchangeEnvelope>, n: number): Promise<ExchangeEnvelope[]> {
  const out: ExchangeEnvelope[] = [];
  if (n === 0) return out;
  for await (const env of sub) {
    out.push(env);
    if (out.length === n) break;
  }
  return out;
}

describe('Exchange', () => {
  test('publish encodes the event as an Any and delivers it with namespace, topic and time', async () => {
    const ex = new Exchange();
    const sub = ex.subscribe();
    await ex.publish({ namespace: 'ns1' }, '/namespaces/create', 'containerd.events.NamespaceCreate', {
      name: 'ns1',
      labels: { a: 'b' },
    });
    const [env] = await take(sub, 1);
    expect(env).toMatchObject({ namespace: 'ns1', topic: '/namespaces/create' });
    expect(env!.timestamp).toBeInstanceOf(Date);
    expect(env!.event.typeUrl).toBe('containerd.events.NamespaceCreate');
    expect(decodeAny(env!.event)).toEqual({ name: 'ns1', labels: { a: 'b' } });
    expect(ex.subscriberCount).toBe(0); // breaking out of the loop closed it
  });

  test('filters select on topic, namespace and event fields', async () => {
    const ex = new Exchange();
    const byTopic = ex.subscribe(['topic~="^/content/"']);
    const byNs = ex.subscribe(['namespace==b']);
    const byField = ex.subscribe(['event.name==x']);
    const byLabel = ex.subscribe(['event.labels.team==core']);
    await ex.publish({ namespace: 'a' }, '/namespaces/create', 'containerd.events.NamespaceCreate', {
      name: 'x',
      labels: {},
    });
    await ex.publish({ namespace: 'b' }, '/content/delete', 'containerd.events.ContentDelete', {
      digest: 'sha256:1',
    });
    await ex.publish({ namespace: 'a' }, '/namespaces/update', 'containerd.events.NamespaceUpdate', {
      name: 'y',
      labels: { team: 'core' },
    });
    for (const s of [byTopic, byNs, byField, byLabel]) s.close();
    expect((await take(byTopic, 5)).map((e) => e.topic)).toEqual(['/content/delete']);
    expect((await take(byNs, 5)).map((e) => e.topic)).toEqual(['/content/delete']);
    expect((await take(byField, 5)).map((e) => e.topic)).toEqual(['/namespaces/create']);
    expect((await take(byLabel, 5)).map((e) => e.topic)).toEqual(['/namespaces/update']);
  });

  test('publish without a namespace is FailedPrecondition; a bad topic InvalidArgument', async () => {
    const ex = new Exchange();
    await expect(
      ex.publish({}, '/x', 'containerd.events.ContentDelete', { digest: 'd' }),
    ).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: 'failed publishing event: namespace is required',
    });
    await expect(
      ex.publish({ namespace: 'n' }, 'x', 'containerd.events.ContentDelete', { digest: 'd' }),
    ).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: `envelope topic "x": must start with '/'`,
    });
  });

  test('an unknown event type or field is refused, not silently dropped', async () => {
    const ex = new Exchange();
    await expect(ex.publish({ namespace: 'n' }, '/x', 'containerd.events.Nope', {})).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    });
    await expect(
      ex.publish({ namespace: 'n' }, '/x', 'containerd.events.ContentDelete', { digets: 'd' }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });

  test('a malformed subscription filter is InvalidArgument', () => {
    expect(() => new Exchange().subscribe(['topic=='])).toThrow(/failed parsing subscription filters/);
  });

  test('aborting the signal ends the subscription', async () => {
    const ex = new Exchange();
    const ac = new AbortController();
    const sub = ex.subscribe([], ac.signal);
    const pending = take(sub, 1);
    ac.abort();
    expect(await pending).toEqual([]);
    expect(ex.subscriberCount).toBe(0);
  });

  test('forward delivers an envelope from elsewhere after validating it', async () => {
    const ex = new Exchange();
    const sub = ex.subscribe(['event.digest==sha256:2']);
    const { encodeAny } = await import('@berth/api');
    await ex.forward({
      timestamp: new Date(),
      namespace: 'n',
      topic: '/content/delete',
      event: encodeAny('containerd.events.ContentDelete', { digest: 'sha256:2' }),
    });
    const [env] = await take(sub, 1);
    expect(env!.topic).toBe('/content/delete');
    await expect(
      ex.forward({
        timestamp: new Date(),
        namespace: 'bad ns',
        topic: '/t',
        event: { typeUrl: 'x', value: Buffer.alloc(0) },
      }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
  });
});

describe('validateTopic', () => {
  test.each(['', '/', '/a//b', '/a/b c'])('%j is invalid', (t) => {
    expect(() => validateTopic(t)).toThrow(/envelope topic/);
  });
  test('accepts containerd topics', () => {
    expect(() => validateTopic('/tasks/exit')).not.toThrow();
  });
});
