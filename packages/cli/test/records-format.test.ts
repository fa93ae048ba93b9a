import { createHash } from 'node:crypto';
import { encodeAny, NanoDate } from '@berth/api';
import { formatEnvelope, goJson, goTimeString } from '../src/commands/events';
import { binarySize, chainId, formatPlatform, normalizePlatform } from '../src/image-content';

describe('events lines as ctr prints them', () => {
  test('Go time.String() of a UTC timestamp, fraction trimmed', () => {
    expect(goTimeString(new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 120)))).toBe(
      '2024-01-02 03:04:05.12 +0000 UTC',
    );
    expect(goTimeString(new Date(Date.UTC(2024, 0, 2, 3, 4, 5)))).toBe('2024-01-02 03:04:05 +0000 UTC');
    expect(goTimeString(new Date(Date.UTC(2024, 0, 2, 3, 4, 5)), 1)).toBe(
      '2024-01-02 03:04:05.000000001 +0000 UTC',
    );
    // An event's NanoDate prints its nanoseconds, as ctr does.
    expect(goTimeString(NanoDate.fromNanos(1_704_164_645_915_261_957n))).toBe(
      '2024-01-02 03:04:05.915261957 +0000 UTC',
    );
  });

  test('encoding/json of the gogo struct: proto order and names, omitempty, sorted maps', () => {
    expect(
      goJson(
        { labels: { z: '1', a: '' }, snapshotKey: 'k', image: '', id: 'c1' },
        'containerd.events.ContainerUpdate',
      ),
    ).toBe('{"id":"c1","labels":{"a":"","z":"1"},"snapshot_key":"k"}');
    expect(goJson({ id: 'c', image: 'i', runtime: null }, 'containerd.events.ContainerCreate')).toBe(
      '{"id":"c","image":"i"}',
    );
    expect(
      goJson(
        { id: 'c', runtime: { name: 'r', options: { typeUrl: 't', value: Buffer.from([1, 2]) } } },
        'containerd.events.ContainerCreate',
      ),
    ).toBe('{"id":"c","runtime":{"name":"r","options":{"type_url":"t","value":"AQI="}}}');
    // Go escapes <, > and & in strings.
    expect(goJson({ name: 'a<b>&c' }, 'containerd.services.images.v1.ImageDelete')).toBe(
      '{"name":"a\\u003cb\\u003e\\u0026c"}',
    );
  });

  test('timestamps are RFC 3339 with nanoseconds; an unset one is the zero time, as time.Time prints', () => {
    const exit = goJson(
      { containerId: 'c', id: 'c', pid: 42, exitStatus: 0, exitedAt: { seconds: 1_700_000_000, nanos: 500 } },
      'containerd.events.TaskExit',
    );
    expect(exit).toBe('{"container_id":"c","id":"c","pid":42,"exited_at":"2023-11-14T22:13:20.0000005Z"}');
    expect(
      goJson({ containerId: 'c', id: 'c', pid: 1, exitedAt: null }, 'containerd.events.TaskExit'),
    ).toContain('"exited_at":"0001-01-01T00:00:00Z"');
  });

  test('a whole line: time, namespace, topic, json', () => {
    const env = {
      timestamp: new Date(Date.UTC(2024, 4, 6, 7, 8, 9, 5)),
      namespace: 'default',
      topic: '/images/create',
      event: encodeAny('containerd.services.images.v1.ImageCreate', { name: 'x', labels: {} }),
    };
    expect(formatEnvelope(env, { name: 'x', labels: {} })).toBe(
      '2024-05-06 07:08:09.005 +0000 UTC default /images/create {"name":"x"}\n',
    );
  });

  test('an unknown event type is refused, so the caller can skip it as ctr does', () => {
    expect(() => goJson({}, 'no.such.Event')).toThrow('not found');
  });
});

describe('image content helpers', () => {
  const sha = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

  test('chain ids as containerd identity.ChainID', () => {
    const [a, b, c] = [sha('a'), sha('b'), sha('c')];
    expect(chainId([])).toBe('');
    expect(chainId([a])).toBe(a);
    const ab = sha(`${a} ${b}`);
    expect(chainId([a, b])).toBe(ab);
    expect(chainId([a, b, c])).toBe(sha(`${ab} ${c}`));
  });

  test.each([
    [0, '0.0 B'],
    [355, '355.0 B'],
    [1024, '1.0 KiB'],
    [1536, '1.5 KiB'],
    [5 * 1024 * 1024, '5.0 MiB'],
  ])('progress.Bytes(%d) is %s', (n, text) => {
    expect(binarySize(n)).toBe(text);
  });

  test.each([
    [{ os: 'linux', architecture: 'x86_64' }, 'linux/amd64'],
    [{ os: 'linux', architecture: 'aarch64', variant: 'v8' }, 'linux/arm64'],
    [{ os: 'linux', architecture: 'arm' }, 'linux/arm/v7'],
    [{ os: 'Linux', architecture: 'armhf' }, 'linux/arm/v7'],
    [{ os: 'linux', architecture: 'i386' }, 'linux/386'],
  ])('normalises %j to %s', (p, text) => {
    expect(formatPlatform(normalizePlatform(p))).toBe(text);
  });
});
