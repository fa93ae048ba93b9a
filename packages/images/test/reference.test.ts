import {
  familiarReference,
  formatReference,
  normalizeReference,
  parseReference,
  referenceObject,
  validateTag,
} from '@berth/images';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['docker.io/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox:1', 'docker.io/library/busybox:1'],
    ['user/app', 'docker.io/user/app:latest'],
    ['quay.io/org/app/sub:v1.2_3-x', 'quay.io/org/app/sub:v1.2_3-x'],
    ['localhost/x', 'localhost/x:latest'],
    ['localhost:5000/x/y:t', 'localhost:5000/x/y:t'],
    ['127.0.0.1:5000/a', '127.0.0.1:5000/a:latest'],
    ['Host.Example.com/a', 'Host.Example.com/a:latest'],
    [`busybox@${D}`, `docker.io/library/busybox@${D}`],
    // Docker's ParseDockerRef: with tag and digest, the digest wins.
    [`busybox:1@${D}`, `docker.io/library/busybox@${D}`],
    ['a__b.c-d---e', 'docker.io/library/a__b.c-d---e:latest'],
    ['org/a__b.c-d---e/f_g', 'docker.io/org/a__b.c-d---e/f_g:latest'],
  ])('%s -> %s', (input, want) => {
    expect(normalizeReference(input)).toBe(want);
  });

  it('splits into domain, path, tag and digest', () => {
    expect(parseReference('localhost:5000/a/b:t')).toEqual({
      domain: 'localhost:5000',
      path: 'a/b',
      tag: 't',
    });
    expect(parseReference(`x.io/a@${D}`)).toEqual({ domain: 'x.io', path: 'a', digest: D });
    expect(parseReference(`x.io/a:t@${D}`, { dockerDefaults: false })).toEqual({
      domain: 'x.io',
      path: 'a',
      tag: 't',
      digest: D,
    });
    expect(parseReference('x.io/a', { dockerDefaults: false })).toEqual({ domain: 'x.io', path: 'a' });
  });

  it.each([
    ['', 'at least one component'],
    ['Busybox', 'must be lowercase'],
    ['docker.io/Library/busybox', 'must be lowercase'],
    ['a'.repeat(64).replace(/a/g, 'f'), '64-byte hexadecimal'],
    ['busybox:', 'invalid reference format'],
    ['busybox:-tag', 'invalid reference format'],
    [`busybox:${'t'.repeat(129)}`, 'invalid reference format'],
    ['busybox@sha256:abc', 'invalid reference format'],
    [`busybox@sha256:${'A'.repeat(64)}`, 'invalid checksum digest format'],
    [`busybox@md5:${'a'.repeat(64)}`, 'unsupported algorithm'],
    ['a//b', 'invalid reference format'],
    ['a/b/', 'invalid reference format'],
    ['-a/b', 'invalid reference format'],
    ['a b', 'invalid reference format'],
    ['a_b.c/f', 'invalid reference format'],
    [`x.io/${'a'.repeat(300)}`, 'must not be more than 255 characters'],
  ])('refuses %j (%s), naming it', (input, why) => {
    let err: any;
    try {
      parseReference(input);
    } catch (e) {
      err = e;
    }
    expect(err?.code).toBe('ERR_INVALID_ARGUMENT');
    expect(err.message).toContain(why);
    expect(err.message).toContain(JSON.stringify(input.slice(0, 300)).slice(0, 20));
  });

  it('does not backtrack catastrophically on hostile input', () => {
    const hostile = `${'a-'.repeat(2000)}!`;
    const t = process.hrtime.bigint();
    expect(() => parseReference(hostile)).toThrow(/invalid reference/);
    // A linear regexp finishes this in well under a second; the catastrophic one never does.
    expect(Number(process.hrtime.bigint() - t) / 1e9).toBeLessThan(5);
  });

  it('formats, familiarises and names the object', () => {
    expect(familiarReference(parseReference('busybox'))).toBe('busybox:latest');
    expect(familiarReference(parseReference('user/app:1'))).toBe('user/app:1');
    expect(familiarReference(parseReference('docker.io/library/a/b'))).toBe('library/a/b:latest');
    expect(familiarReference(parseReference('localhost:5000/x'))).toBe('localhost:5000/x:latest');
    expect(formatReference({ domain: 'h', path: 'p' })).toBe('h/p');
    expect(referenceObject(parseReference(`a@${D}`))).toBe(D);
    expect(referenceObject(parseReference('a:t'))).toBe('t');
    expect(() => referenceObject({ domain: 'h', path: 'p' })).toThrow(/object required/);
    expect(validateTag('v1.0')).toBe('v1.0');
    expect(() => validateTag('.x')).toThrow(/invalid tag ".x"/);
  });
});
