import {
  defaultPlatform,
  defaultPlatformMatcher,
  formatPlatform,
  normalizePlatform,
  onlyPlatform,
  onlyPlatformStrict,
  type Platform,
  parsePlatform,
  platformMatcher,
  selectManifests,
} from '@berth/images';

const P = (s: string): Platform => {
  const [os, architecture, variant] = s.split('/');
  return { os: os!, architecture: architecture!, ...(variant ? { variant } : {}) };
};

describe('platforms', () => {
  it.each([
    ['linux/amd64', 'linux/amd64'],
    ['linux/x86_64', 'linux/amd64'],
    ['linux/x86-64', 'linux/amd64'],
    ['Linux/AMD64', 'linux/amd64'],
    ['linux/arm64', 'linux/arm64'],
    ['linux/aarch64', 'linux/arm64'],
    ['linux/arm64/v8', 'linux/arm64/v8'],
    ['linux/aarch64/8', 'linux/arm64/v8'],
    ['linux/arm', 'linux/arm'],
    ['linux/arm/7', 'linux/arm/v7'],
    ['linux/arm/v6', 'linux/arm/v6'],
    ['linux/armhf', 'linux/arm'],
    ['linux/armel', 'linux/arm/v6'],
    ['linux/i386', 'linux/386'],
    ['macos/arm64', 'darwin/arm64'],
    ['windows/amd64', 'windows/amd64'],
  ])('parses %s as %s', (spec, want) => {
    expect(formatPlatform(parsePlatform(spec))).toBe(want);
  });

  it('parses a lone OS or architecture with this host filling in the rest', () => {
    const host = defaultPlatform();
    expect(parsePlatform('linux')).toEqual({ os: 'linux', architecture: host.architecture });
    expect(parsePlatform('arm64')).toEqual({ os: host.os, architecture: 'arm64' });
    expect(parsePlatform('x86_64')).toEqual({ os: host.os, architecture: 'amd64' });
  });

  it.each([
    ['linux/*', 'wildcards'],
    ['linux/amd64/v1/x', 'cannot parse'],
    ['linux//amd64', 'component ""'],
    ['lin ux', 'must match'],
    ['plan10', 'unknown operating system or architecture'],
  ])('refuses %j (%s)', (spec, why) => {
    expect(() => parsePlatform(spec)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => parsePlatform(spec)).toThrow(why);
    expect(() => parsePlatform(spec)).toThrow(JSON.stringify(spec));
  });

  it('normalises descriptors as containerd does', () => {
    expect(normalizePlatform(P('linux/aarch64/v8'))).toEqual(P('linux/arm64'));
    expect(normalizePlatform(P('linux/arm'))).toEqual(P('linux/arm/v7'));
    expect(normalizePlatform(P('linux/amd64/v1'))).toEqual(P('linux/amd64'));
  });

  it('defaults to linux/amd64 on this machine', () => {
    expect(formatPlatform(defaultPlatform())).toBe(
      process.arch === 'x64' ? 'linux/amd64' : formatPlatform(defaultPlatform()),
    );
    expect(defaultPlatformMatcher().match(P('linux/amd64'))).toBe(process.arch === 'x64');
  });

  it('matches like platforms.Only, with its preference order', () => {
    const amd = onlyPlatform(P('linux/amd64'));
    expect(amd.match(P('linux/amd64'))).toBe(true);
    expect(amd.match(P('linux/x86_64'))).toBe(true);
    expect(amd.match(P('linux/386'))).toBe(true);
    expect(amd.match(P('linux/arm64'))).toBe(false);
    expect(amd.match(P('windows/amd64'))).toBe(false);
    expect(amd.less(P('linux/amd64'), P('linux/386'))).toBe(true);
    expect(amd.less(P('linux/386'), P('linux/amd64'))).toBe(false);

    const arm64 = onlyPlatform(parsePlatform('linux/arm64/v8'));
    for (const ok of [
      'linux/arm64',
      'linux/arm64/v8',
      'linux/arm/v8',
      'linux/arm/v7',
      'linux/arm/v6',
      'linux/arm/v5',
    ]) {
      expect([ok, arm64.match(P(ok))]).toEqual([ok, true]);
    }
    expect(arm64.match(P('linux/amd64'))).toBe(false);
    expect(arm64.less(P('linux/arm/v7'), P('linux/arm/v6'))).toBe(true);

    const v7 = onlyPlatform(P('linux/arm/v7'));
    expect(v7.match(P('linux/arm/v8'))).toBe(false);
    expect(v7.match(P('linux/arm/v5'))).toBe(true);

    const strict = onlyPlatformStrict(P('linux/amd64'));
    expect(strict.match(P('linux/386'))).toBe(false);
    expect(onlyPlatformStrict(P('linux/arm64')).match(P('linux/arm64/v8'))).toBe(true);
  });

  it('picks the best manifest of an index (FilterPlatforms + LimitManifests(1))', () => {
    const d = (p: string, n: number) => ({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${String(n).repeat(64)}`,
      size: 1,
      platform: P(p),
    });
    const list = [d('linux/arm64/v8', 1), d('linux/386', 2), d('linux/amd64', 3), d('windows/amd64', 4)];
    expect(selectManifests(list, platformMatcher('linux/amd64'), false).map((x) => x.digest)).toEqual([
      list[2]!.digest,
    ]);
    expect(selectManifests(list.slice(0, 2), platformMatcher('linux/amd64'), false)).toEqual([list[1]]);
    expect(selectManifests(list, platformMatcher('linux/arm64'), false)).toEqual([list[0]]);
    expect(selectManifests(list, platformMatcher('linux/s390x'), false)).toEqual([]);
    expect(selectManifests(list, platformMatcher('all'), true)).toHaveLength(4);
    expect(selectManifests(list, platformMatcher(['linux/arm64', 'linux/amd64']), true)).toHaveLength(2);
  });
});
