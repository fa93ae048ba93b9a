import { isInvalidArgument, isNotFound, type wire } from '@berth/api';
import { parseReference } from '@berth/images';
import {
  authCredentials,
  goTime,
  imageSpecJson,
  isDigest,
  lookupId,
  repoDigestAndTag,
  serverAddressHost,
  sortReferences,
  splitReferences,
  userFromImage,
} from '../src/image/references';

const ID_A = `sha256:${'a'.repeat(63)}1`;
const ID_B = `sha256:${'a'.repeat(62)}21`;
const ID_C = `sha256:${'c'.repeat(64)}`;
const MANIFEST = `sha256:${'d'.repeat(64)}`;

const auth = (a: Partial<wire.cri.AuthConfig>): wire.cri.AuthConfig => ({
  username: '',
  password: '',
  auth: '',
  serverAddress: '',
  identityToken: '',
  registryToken: '',
  ...a,
});

describe('authCredentials (the PullImage AuthConfig)', () => {
  it('is undefined without an AuthConfig or with an empty one (anonymous pulls)', async () => {
    expect(authCredentials(undefined)).toBeUndefined();
    expect(authCredentials(auth({}))).toBeUndefined();
    // registry_token is not used, as in containerd 1.6.
    expect(authCredentials(auth({ registryToken: 'tok' }))).toBeUndefined();
  });

  it('gives username and password for every host when no server_address is set', async () => {
    const f = authCredentials(auth({ username: 'u', password: 'p' }))!;
    await expect(f('127.0.0.1:5000')).resolves.toEqual({ username: 'u', password: 'p' });
    await expect(f('registry.example')).resolves.toEqual({ username: 'u', password: 'p' });
  });

  it('prefers username/password over an identity token, and that over auth', async () => {
    const all = auth({
      username: 'u',
      password: 'p',
      identityToken: 'refresh',
      auth: Buffer.from('x:y').toString('base64'),
    });
    await expect(authCredentials(all)!('h')).resolves.toEqual({ username: 'u', password: 'p' });
    await expect(authCredentials({ ...all, username: '' })!('h')).resolves.toEqual({
      identityToken: 'refresh',
    });
    await expect(authCredentials({ ...all, username: '', identityToken: '' })!('h')).resolves.toEqual({
      username: 'x',
      password: 'y',
    });
  });

  it('decodes auth as base64 user:password (the password may hold colons; trailing NULs dropped)', async () => {
    const f = authCredentials(auth({ auth: Buffer.from('me:pa:ss\0\0').toString('base64') }))!;
    await expect(f('h')).resolves.toEqual({ username: 'me', password: 'pa:ss' });
  });

  it('refuses an auth that is not user:password, as InvalidArgument', () => {
    let err: unknown;
    try {
      authCredentials(auth({ auth: Buffer.from('nocolon').toString('base64') }));
    } catch (e) {
      err = e;
    }
    expect(isInvalidArgument(err)).toBe(true);
    expect((err as Error).message).toContain('auth');
  });

  it('limits the credentials to the server_address host', async () => {
    const f = authCredentials(
      auth({ username: 'u', password: 'p', serverAddress: 'https://127.0.0.1:5000/v2/' }),
    )!;
    await expect(f('127.0.0.1:5000')).resolves.toEqual({ username: 'u', password: 'p' });
    await expect(f('127.0.0.1:5001')).resolves.toBeUndefined();
    const hub = authCredentials(
      auth({ username: 'u', password: 'p', serverAddress: 'https://index.docker.io/v1/' }),
    )!;
    await expect(hub('registry-1.docker.io')).resolves.toEqual({ username: 'u', password: 'p' });
    await expect(hub('quay.io')).resolves.toBeUndefined();
  });

  it('reads server addresses with or without scheme and path', () => {
    expect(serverAddressHost('https://r.example:443/v1/')).toBe('r.example:443');
    expect(serverAddressHost('r.example')).toBe('r.example');
    expect(serverAddressHost('127.0.0.1:5000/x')).toBe('127.0.0.1:5000');
  });
});

describe('image references', () => {
  it('keeps the tag, repo digest and id records containerd keeps', () => {
    expect(repoDigestAndTag(parseReference('busybox'), MANIFEST)).toEqual({
      repoTag: 'docker.io/library/busybox:latest',
      repoDigest: `docker.io/library/busybox@${MANIFEST}`,
    });
    // Pulled by digest: no tag record.
    expect(repoDigestAndTag(parseReference(`127.0.0.1:5000/a/b@${MANIFEST}`), MANIFEST)).toEqual({
      repoDigest: `127.0.0.1:5000/a/b@${MANIFEST}`,
    });
  });

  it('sorts references as containerd does: tag+digest, tags, digests, names, ids', () => {
    expect(
      sortReferences([
        ID_C,
        `docker.io/library/b@${MANIFEST}`,
        'docker.io/library/b:2',
        'docker.io/library/a:1',
        `docker.io/library/a:1@${MANIFEST}`,
        'docker.io/library/a:1',
      ]),
    ).toEqual([
      `docker.io/library/a:1@${MANIFEST}`,
      'docker.io/library/a:1',
      'docker.io/library/b:2',
      `docker.io/library/b@${MANIFEST}`,
      ID_C,
    ]);
  });

  it('splits references into repo tags and repo digests; ids are neither', () => {
    expect(
      splitReferences([`docker.io/library/b@${MANIFEST}`, 'docker.io/library/b:2', ID_C, 'Bad Ref']),
    ).toEqual({
      repoTags: ['docker.io/library/b:2'],
      repoDigests: [`docker.io/library/b@${MANIFEST}`],
    });
  });

  it('tells ids from references', () => {
    expect(isDigest(ID_C)).toBe(true);
    expect(isDigest('sha256:abc')).toBe(false);
    expect(isDigest('busybox')).toBe(false);
    expect(isDigest('c'.repeat(64))).toBe(false);
  });
});

describe('lookupId (full ids and unique hex prefixes)', () => {
  const ids = [ID_A, ID_B, ID_C];
  it('finds a full id and a unique prefix', () => {
    expect(lookupId(ids, ID_B)).toBe(ID_B);
    expect(lookupId(ids, 'ccc')).toBe(ID_C);
    expect(lookupId(ids, 'c'.repeat(64))).toBe(ID_C);
  });

  it('is NotFound naming the query when nothing matches', () => {
    for (const q of ['bbb', 'sha256:ccc', 'busybox']) {
      let err: unknown;
      try {
        lookupId(ids, q);
      } catch (e) {
        err = e;
      }
      expect(isNotFound(err)).toBe(true);
      expect((err as Error).message).toContain(`"${q}"`);
    }
  });

  it('is InvalidArgument when a prefix matches several images', () => {
    expect(() => lookupId(ids, 'aaaa')).toThrow(/ambiguous/);
  });
});

describe('userFromImage', () => {
  it.each([
    ['', { username: '' }],
    ['1002', { uid: 1002, username: '' }],
    ['1003:1004', { uid: 1003, username: '' }],
    ['www-data', { username: 'www-data' }],
    ['www-data:1004', { username: 'www-data' }],
    ['0', { uid: 0, username: '' }],
  ])('User %j', (user, want) => {
    expect(userFromImage(user)).toEqual(want);
  });
});

describe('imageSpecJson (verbose ImageStatus)', () => {
  it("orders and omits fields as containerd's Go structs marshal them", () => {
    const spec = imageSpecJson({
      history: [{ created_by: 'x', empty_layer: false }],
      rootfs: { diff_ids: ['sha256:1'], type: 'layers' },
      config: { Cmd: ['sh'], Env: [], User: '1' },
      os: 'linux',
      architecture: 'amd64',
      created: '2020-01-01T00:00:00Z',
    });
    expect(JSON.stringify(spec)).toBe(
      JSON.stringify({
        created: '2020-01-01T00:00:00Z',
        architecture: 'amd64',
        os: 'linux',
        config: { User: '1', Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: ['sha256:1'] },
        history: [{ created_by: 'x' }],
      }),
    );
  });
});

describe('goTime', () => {
  it.each([
    ['2020-09-13T12:26:40Z', '2020-09-13T12:26:40Z'],
    ['2020-09-13T12:26:40.000000000Z', '2020-09-13T12:26:40Z'],
    ['2020-09-13T12:26:40.123400Z', '2020-09-13T12:26:40.1234Z'],
    ['2020-09-13T12:26:40.5+02:00', '2020-09-13T12:26:40.5+02:00'],
  ])('%s', (input, want) => {
    expect(goTime(input)).toBe(want);
  });
});
