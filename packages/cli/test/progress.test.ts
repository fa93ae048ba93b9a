import { PassThrough } from 'node:stream';
import { parseUser, pullEventToProgress } from '../src/image-transfer';
import { ProgressDisplay } from '../src/progress';

const D1 = `sha256:${'a'.repeat(64)}`;
const D2 = `sha256:${'b'.repeat(64)}`;

function capture() {
  const out = new PassThrough();
  let text = '';
  out.on('data', (b: Buffer) => {
    text += b.toString();
  });
  return { out, text: () => text };
}

describe('ProgressDisplay, not on a terminal', () => {
  it('prints a line per change of state, none for updates within a state', () => {
    const c = capture();
    const d = new ProgressDisplay(c.out, { tty: false });
    d.handle({ event: 'waiting', name: `layer-${D1}`, progress: 0, total: 2048 });
    d.handle({ event: 'downloading', name: `layer-${D1}`, progress: 0, total: 2048 });
    d.handle({ event: 'downloading', name: `layer-${D1}`, progress: 1024, total: 2048 });
    d.handle({ event: 'complete', name: `layer-${D1}`, progress: 2048, total: 2048 });
    d.handle({ event: 'already exists', name: `config-${D2}`, progress: 10, total: 10 });
    d.handle({ event: 'unpacking', name: `layer-${D1}`, progress: 0, total: 0 });
    d.handle({ event: 'unpacked', name: `layer-${D1}`, progress: 0, total: 0 });
    d.handle({ event: 'Completed pull from somewhere', name: '', progress: 0, total: 0 });
    d.stop();
    expect(c.text()).toBe(
      [
        'layer sha256:aaaaaaaaaaaa: downloading 2.0 KiB',
        'layer sha256:aaaaaaaaaaaa: done 2.0 KiB',
        'config sha256:bbbbbbbbbbbb: exists 10.0 B',
        'layer sha256:aaaaaaaaaaaa: unpacked',
        '',
      ].join('\n'),
    );
  });

  it('says where a resumed download starts', () => {
    const c = capture();
    const d = new ProgressDisplay(c.out, { tty: false });
    d.handle({ event: 'downloading', name: `layer-${D1}`, progress: 1536, total: 4096 });
    expect(c.text()).toBe('layer sha256:aaaaaaaaaaaa: downloading (resuming at 1.5 KiB of 4.0 KiB)\n');
  });
});

describe('ProgressDisplay on a terminal', () => {
  it('redraws the bars in place and keeps the last drawing', () => {
    const c = capture();
    let now = 0;
    const d = new ProgressDisplay(c.out, { tty: true, columns: 100, intervalMs: 1_000_000, now: () => now });
    d.handle({ event: 'downloading', name: `layer-${D1}`, progress: 512, total: 1024 });
    d.message('resolving x');
    now = 2000;
    d.handle({ event: 'complete', name: `layer-${D1}`, progress: 1024, total: 1024 });
    d.stop();
    const text = c.text();
    expect(text).toContain('resolving x\n');
    expect(text).toMatch(/layer sha256:aaaaaaaaaaaa {2}downloading \|\++-+\| 512\.0 B\/1\.0 KiB/);
    // The second drawing replaces the first: cursor up over the old lines, clear below.
    expect(text).toContain('\x1b[2A\x1b[J');
    const last = text.slice(text.lastIndexOf('\x1b[J') + 3);
    expect(last).toMatch(
      /^layer sha256:aaaaaaaaaaaa {2}done {8}\|\++\| 1\.0 KiB\nelapsed: 2\.0 s {2}transferred: 512\.0 B\n$/,
    );
  });
});

describe('registry flags', () => {
  it('splits --user at the first colon and refuses a value without one', () => {
    expect(parseUser('bob:pa:ss', ['images', 'pull'])).toEqual({ username: 'bob', password: 'pa:ss' });
    expect(parseUser(undefined, [])).toBeUndefined();
    expect(() => parseUser('bob', ['images', 'pull'])).toThrow('--user "bob": expected USER:PASSWORD');
    expect(() => parseUser(':pw', ['images', 'pull'])).toThrow('expected USER:PASSWORD');
  });

  it('turns a client-side pull event into the Transfer service words', () => {
    const blob = {
      type: 'blob' as const,
      digest: D1,
      mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
    };
    expect(pullEventToProgress({ ...blob, offset: 5, total: 9, status: 'resumed' })).toEqual({
      event: 'downloading',
      name: `layer-${D1}`,
      progress: 5,
      total: 9,
    });
    expect(pullEventToProgress({ ...blob, offset: 9, total: 9, status: 'shared' })?.event).toBe('complete');
    expect(pullEventToProgress({ ...blob, offset: 9, total: 9, status: 'exists' })?.event).toBe(
      'already exists',
    );
    expect(pullEventToProgress({ type: 'unpack', layer: D1, chainId: D2, status: 'exists' })?.event).toBe(
      'unpacked',
    );
    expect(
      pullEventToProgress({ type: 'resolved', name: 'x', desc: { digest: D1, size: 1, mediaType: 'm' } }),
    ).toBeUndefined();
  });
});
