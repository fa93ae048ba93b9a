import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { oci } from '@berth/client';

const PASSWD = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin

alice:x:1000:1000:Alice:/home/alice:/bin/sh
  bob:x:1001:1001::/home/bob:/bin/sh
broken:x:notanumber:7::/:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`;

const GROUP = `root:x:0:
# a comment line
wheel:x:10:root,alice
users:x:100:alice,bob
alice:x:1000:alice
bob:x:1001:
staff:x:50:alice
nogroup:x:65534:
`;

let root: string;
let bare: string;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'oci-user-'));
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc', 'passwd'), PASSWD);
  writeFileSync(join(root, 'etc', 'group'), GROUP);
  bare = mkdtempSync(join(tmpdir(), 'oci-bare-'));
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(bare, { recursive: true, force: true });
});

// null: no root filesystem at all.
const user = async (opt: oci.SpecOpt, rootfs: string | oci.RootfsReader | null = root) =>
  (await oci.generateSpec({ namespace: 'default', id: 'u', rootfs: rootfs ?? undefined }, opt)).process?.user;

describe('withUser', () => {
  it.each<[string, oci.User]>([
    ['alice', { uid: 1000, gid: 1000, additionalGids: [1000] }],
    ['1000', { uid: 1000, gid: 1000, additionalGids: [1000] }],
    ['nobody', { uid: 65534, gid: 65534, additionalGids: [65534] }],
    ['bob', { uid: 1001, gid: 1001, additionalGids: [1001] }],
    ['alice:staff', { uid: 1000, gid: 50, additionalGids: [50] }],
    ['alice:7', { uid: 1000, gid: 7, additionalGids: [7] }],
    ['1000:staff', { uid: 1000, gid: 50, additionalGids: [50] }],
    ['1234:5678', { uid: 1234, gid: 5678, additionalGids: [5678] }],
    ['4242', { uid: 4242, gid: 0, additionalGids: [0] }],
    ['0', { uid: 0, gid: 0, additionalGids: [0] }],
  ])('%s resolves to %j', async (spec, expected) => {
    expect(await user(oci.withUser(spec))).toEqual(expected);
  });

  it('reads a numeric field that does not parse as 0, as runc does', async () => {
    expect(await user(oci.withUser('broken'))).toEqual({ uid: 0, gid: 7, additionalGids: [7] });
  });

  it.each([
    ['ghost', /user "ghost" not found in the container's \/etc\/passwd/],
    ['alice:ghosts', /group "ghosts" not found in the container's \/etc\/group/],
    ['ghost:0', /user "ghost" not found/],
  ])('%s is NotFound', async (spec, message) => {
    await expect(user(oci.withUser(spec))).rejects.toThrow(message);
    await expect(user(oci.withUser(spec))).rejects.toMatchObject({ code: 'ERR_NOT_FOUND' });
  });

  it('refuses more than user:group', async () => {
    await expect(user(oci.withUser('a:b:c'))).rejects.toMatchObject({
      code: 'ERR_INVALID_ARGUMENT',
      message: 'invalid USER value "a:b:c"',
    });
  });

  it('treats ids beyond runc limits and negative ones as names', async () => {
    await expect(user(oci.withUser('2147483648'))).rejects.toThrow(/user "2147483648" not found/);
    await expect(user(oci.withUser('-1'))).rejects.toThrow(/user "-1" not found/);
  });

  it('says a root filesystem without /etc/passwd or /etc/group has none', async () => {
    await expect(user(oci.withUser('alice'), bare)).rejects.toThrow(
      /user "alice": the container has no \/etc\/passwd/,
    );
    await expect(user(oci.withUser('0:staff'), bare)).rejects.toThrow(
      /group "staff": the container has no \/etc\/group/,
    );
    expect(await user(oci.withUser('1000'), bare)).toEqual({ uid: 1000, gid: 0, additionalGids: [0] });
  });

  it('needs a root filesystem to resolve a name, but not for numbers', async () => {
    await expect(user(oci.withUser('alice'), null)).rejects.toMatchObject({
      code: 'ERR_FAILED_PRECONDITION',
      message: expect.stringContaining('user "alice"'),
    });
    expect(await user(oci.withUser('1000:1000'), null)).toEqual({
      uid: 1000,
      gid: 1000,
      additionalGids: [1000],
    });
    expect(await user(oci.withUser('1000'), null)).toEqual({ uid: 1000, gid: 0, additionalGids: [0] });
  });

  it('falls back to an absolute root.path, as containerd does', async () => {
    const s = await oci.generateSpec(
      { namespace: 'default', id: 'u' },
      oci.withRootfsPath(root),
      oci.withUser('alice'),
    );
    expect(s.process?.user.uid).toBe(1000);
  });

  it('reads through a RootfsReader (e.g. straight from image layers)', async () => {
    const asked: string[] = [];
    const reader: oci.RootfsReader = async (path) => {
      asked.push(path);
      return path === '/etc/passwd' ? Buffer.from('app:x:500:600::/:/bin/sh\n') : undefined;
    };
    expect(await user(oci.withUser('app'), reader)).toEqual({ uid: 500, gid: 600, additionalGids: [600] });
    expect(asked).toEqual(['/etc/passwd']);
  });
});

describe('image user and supplementary groups', () => {
  const image = (User?: string) => oci.withImageConfig({ User, Cmd: ['/bin/sh'] });

  it('adds the groups listing the user, after its primary group', async () => {
    expect(await user(image('alice'))).toEqual({ uid: 1000, gid: 1000, additionalGids: [1000, 10, 100, 50] });
    expect(await user(image('1001'))).toEqual({ uid: 1001, gid: 1001, additionalGids: [1001, 100] });
  });

  it('keeps the order of /etc/group when the primary group is among them', async () => {
    expect(await user(image('alice:staff'))).toEqual({ uid: 1000, gid: 50, additionalGids: [10, 100, 50] });
  });

  it('gives root its groups when the image names no user', async () => {
    expect(await user(image())).toEqual({ uid: 0, gid: 0, additionalGids: [0, 10] });
  });

  it('only the primary group for a uid missing from /etc/passwd, or without /etc/group', async () => {
    expect(await user(image('4242'))).toEqual({ uid: 4242, gid: 0, additionalGids: [0] });
    expect(await user(image(), bare)).toEqual({ uid: 0, gid: 0, additionalGids: [0] });
  });

  it('appends named or numeric groups', async () => {
    expect(
      await user(oci.compose(oci.withUser('bob'), oci.withAppendAdditionalGroups('staff', '77'))),
    ).toEqual({
      uid: 1001,
      gid: 1001,
      additionalGids: [1001, 50, 77],
    });
    await expect(user(oci.withAppendAdditionalGroups('nope'))).rejects.toMatchObject({
      code: 'ERR_NOT_FOUND',
    });
  });

  it('withUIDGID sets ids without looking anything up', async () => {
    expect(await user(oci.withUIDGID(5, 6), null)).toEqual({ uid: 5, gid: 6, additionalGids: [6] });
  });
});

describe('reading inside the root filesystem', () => {
  let jail: string;

  beforeAll(() => {
    jail = mkdtempSync(join(tmpdir(), 'oci-jail-'));
    mkdirSync(join(jail, 'etc'));
    mkdirSync(join(jail, 'data'));
    writeFileSync(join(jail, 'data', 'passwd'), 'jailed:x:321:321::/:/bin/sh\n');
    // Relative and absolute links that would leave the root on the host must stay inside it.
    symlinkSync('../../../../../../../data/passwd', join(jail, 'etc', 'passwd'));
    symlinkSync('/data', join(jail, 'etc', 'grp'));
    writeFileSync(join(jail, 'data', 'group'), 'jailers:x:99:jailed\n');
    symlinkSync('grp/group', join(jail, 'etc', 'group'));
    symlinkSync('loop', join(jail, 'loop'));
  });

  afterAll(() => rmSync(jail, { recursive: true, force: true }));

  it("follows the image's symlinks as if its root were /", async () => {
    expect(await user(oci.withImageConfig({ User: 'jailed' }), jail)).toEqual({
      uid: 321,
      gid: 321,
      additionalGids: [321, 99],
    });
    expect(await oci.resolveInRoot(jail, '/etc/passwd')).toBe(join(jail, 'data', 'passwd'));
    expect(await oci.resolveInRoot(jail, '../../etc/group')).toBe(join(jail, 'data', 'group'));
  });

  it('reports a symlink loop instead of spinning', async () => {
    await expect(oci.resolveInRoot(jail, '/loop/x')).rejects.toThrow(/too many levels of symbolic links/);
  });

  it('parses passwd and group the way runc does', () => {
    expect(oci.parsePasswd(PASSWD).map((u) => u.name)).toEqual([
      'root',
      'daemon',
      'alice',
      'bob',
      'broken',
      'nobody',
    ]);
    expect(oci.parseGroup(GROUP).find((g) => g.name === 'users')).toEqual({
      name: 'users',
      gid: 100,
      members: ['alice', 'bob'],
    });
    expect(oci.parseGroup(GROUP).find((g) => g.name === 'bob')?.members).toEqual([]);
  });
});
