import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  berth,
  containerdInstalled,
  ctr,
  type Daemon,
  type RunResult,
  repoRoot,
  startBerthd,
  startContainerd,
} from '@berth/testkit';

// bin/berth (built dist) against real daemons: Debian's containerd, and berthd when built.
// Where ctr prints the same table, berth's output is compared with ctr's byte for byte.
const isRoot = process.getuid?.() === 0;
const built = existsSync(join(repoRoot, 'packages', 'cli', 'dist', 'main.js'));
const daemons: [string, () => Promise<Daemon>][] = [];
if (built && isRoot && containerdInstalled()) daemons.push(['containerd', () => startContainerd()]);
if (built && existsSync(join(repoRoot, 'packages', 'daemon', 'dist', 'main.js'))) {
  daemons.push(['berthd', () => startBerthd()]);
}

const sha256 = (data: string | Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;
const GC_ROOT = 'containerd.io/gc.root=e2e';

if (daemons.length === 0) it.skip('needs a built CLI (pnpm build) and a daemon to talk to', () => {});

describe.each(daemons)('berth against %s', (_name, start) => {
  let daemon: Daemon;
  let ns: string;

  beforeAll(async () => {
    daemon = await start();
  });
  afterAll(async () => {
    await daemon?.dispose();
  });
  beforeEach(() => {
    ns = `e2e-${randomBytes(4).toString('hex')}`;
  });

  const b = (args: string[], input?: string): Promise<RunResult> =>
    berth(daemon.address, ['-n', ns, ...args], input === undefined ? {} : { input });
  const c = (args: string[]): Promise<RunResult> => ctr(daemon.address, ['-n', ns, ...args]);
  const ok = async (args: string[], input?: string): Promise<string> => {
    const r = await b(args, input);
    if (r.code !== 0) throw new Error(`berth ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    expect(r.stderr).toBe('');
    return r.stdout;
  };
  const fails = async (args: string[], input?: string): Promise<string> => {
    const r = await b(args, input);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^berth: /);
    return r.stderr;
  };
  const ingest = (ref: string, data: string) => ok(['content', 'ingest', '--label', GC_ROOT, ref], data);

  describe('version and plugins', () => {
    it('prints client and server versions, as text and json', async () => {
      const text = await ok(['version']);
      expect(text).toMatch(/^Client:\n {2}Version: {2}\d+\.\d+\.\d+\n/);
      expect(text).toMatch(/\nServer:\n {2}Version: {2}\S+\n {2}Revision: .*\n {2}UUID: [0-9a-f-]{36}\n$/);
      const json = JSON.parse(await ok(['--format', 'json', 'version']));
      expect(json.server.uuid).toBe(/UUID: (\S+)/.exec(text)![1]);
      expect(json.client.version).toMatch(/^\d+\.\d+\.\d+$/);
    });

    it('lists plugins exactly as ctr does, filtered, quiet, detailed and as json', async () => {
      const table = await ok(['plugins', 'ls']);
      expect(table).toMatch(/^TYPE {2,}ID {2,}PLATFORMS {2,}STATUS {2,}\n/);
      expect(table).toMatch(/\nio\.containerd\.content\.v1 +content +- +ok +\n/);
      expect(table).toBe((await c(['plugins', 'ls'])).stdout);
      const filtered = await ok(['plugins', 'ls', 'type==io.containerd.content.v1']);
      expect(filtered.trim().split('\n')).toHaveLength(2);
      expect(await ok(['plugins', 'ls', '-q', 'type==io.containerd.content.v1'])).toBe('content\n');
      const detailed = await ok(['plugins', 'ls', '--detailed', 'id==content']);
      expect(detailed).toMatch(/^Type: +io\.containerd\.content\.v1\nID: +content\n/);
      const json = JSON.parse(await ok(['--format', 'json', 'plugins', 'ls']));
      expect(json).toContainEqual(
        expect.objectContaining({ type: 'io.containerd.content.v1', id: 'content', status: 'ok' }),
      );
      expect(await fails(['plugins', 'ls', 'id=='])).toMatch(/invalid/i);
    });
  });

  describe('namespaces', () => {
    it('creates, labels, lists (as ctr) and removes', async () => {
      expect(await ok(['namespaces', 'create', ns, 'a=1', 'b=2'])).toBe('');
      const table = await ok(['namespaces', 'ls']);
      expect(table).toMatch(new RegExp(`\\n${ns} +a=1,b=2 +\\n`));
      expect(table).toBe((await c(['namespaces', 'ls'])).stdout);
      expect((await ok(['ns', 'ls', '-q'])).split('\n')).toContain(ns);
      expect(await ok(['namespaces', 'label', ns, 'c=3', 'a='])).toBe('');
      const listed = JSON.parse(await ok(['--format', 'json', 'namespaces', 'ls']));
      expect(listed).toContainEqual({ name: ns, labels: { b: '2', c: '3' } });
      expect(await ok(['namespaces', 'rm', ns])).toBe(`${ns}\n`);
      expect(await ok(['ns', 'ls', '-q'])).not.toContain(ns);
    });

    it('fails on a duplicate, a bad name and a namespace that is not empty', async () => {
      await ok(['namespaces', 'create', ns]);
      expect(await fails(['namespaces', 'create', ns])).toMatch(/already exists/);
      expect(await fails(['namespaces', 'create', 'Not Valid'])).toMatch(/Not Valid/);
      await ingest('keep', 'namespace content');
      const r = await b(['namespaces', 'rm', ns]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(new RegExp(`^berth: unable to delete ${ns}: .*must be empty`));
      expect((await ok(['ns', 'ls', '-q'])).split('\n')).toContain(ns);
    });
  });

  describe('content', () => {
    it('ingests from stdin, lists (as ctr), gets and removes', async () => {
      const data = `hello ${ns}\n`;
      const digest = sha256(data);
      expect(await ingest('hello', data)).toBe('');
      const table = await ok(['content', 'ls']);
      expect(table).toMatch(
        new RegExp(
          `^DIGEST\\t+SIZE\\t+AGE\\t+LABELS\\n${digest}\\t+${data.length}B\\t+[^\\t]+\\t+${GC_ROOT}\\n$`,
        ),
      );
      const fromCtr = (await c(['content', 'ls'])).stdout;
      const age = /\t(Less than a second|\d+ seconds?)\t/;
      expect(table.replace(age, '\tAGE\t')).toBe(fromCtr.replace(age, '\tAGE\t'));
      expect(await ok(['content', 'ls', '-q'])).toBe(`${digest}\n`);
      expect(await ok(['content', 'ls', '-q', 'labels."containerd.io/gc.root"==other'])).toBe('');
      const [info] = JSON.parse(await ok(['--format', 'json', 'content', 'ls']));
      expect(info).toMatchObject({ digest, size: data.length, labels: { 'containerd.io/gc.root': 'e2e' } });
      expect(new Date(info.createdAt).getTime()).not.toBeNaN();
      expect(await ok(['content', 'get', digest])).toBe(data);
      expect(await ok(['content', 'rm', digest])).toBe(`${digest}\n`);
      expect(await ok(['content', 'ls', '-q'])).toBe('');
      // Removing what is not there is not an error (as ctr), and prints nothing.
      expect(await ok(['content', 'rm', digest])).toBe('');
    });

    it('streams a multi-megabyte blob both ways', async () => {
      const data = randomBytes(3 << 20).toString('hex'); // 6 MiB of text
      const digest = sha256(data);
      await ok(
        [
          'content',
          'ingest',
          '--label',
          GC_ROOT,
          '--expected-size',
          String(data.length),
          '--expected-digest',
          digest,
          'big',
        ],
        data,
      );
      const out = await ok(['content', 'get', digest]);
      expect(out.length).toBe(data.length);
      expect(sha256(out)).toBe(digest);
      expect(await ok(['content', 'ls'])).toContain(`\t6.291MB\t`);
    });

    it('fails for unknown and malformed digests', async () => {
      const missing = sha256(`missing ${ns}`);
      expect(await fails(['content', 'get', missing])).toMatch(new RegExp(`${missing}.*not found`));
      expect(await fails(['content', 'get', 'sha256:xyz'])).toBe(
        'berth: invalid digest "sha256:xyz": invalid checksum digest format\n',
      );
      expect(await fails(['content', 'label', missing, 'a=b'])).toMatch(/not found/);
      const r = await b(['content', 'rm', 'bogus']);
      expect(r).toMatchObject({ code: 1, stdout: '' });
      expect(r.stderr).toMatch(/^berth: could not delete bogus: invalid digest "bogus"/);
    });

    it('checks the expected size and digest, and resumes an interrupted ingest', async () => {
      const data = randomBytes(400_000).toString('hex');
      const digest = sha256(data);
      const wrong = sha256('something else');
      expect(await fails(['content', 'ingest', '--expected-digest', wrong, 'mismatch'], data)).toMatch(
        /unexpected commit digest|digest/,
      );
      // Refused before stdin is read: a small input, so the test's own write does not hit EPIPE.
      expect(await fails(['content', 'ingest', '--expected-digest', 'sha256:nope', 'r'], 'x')).toMatch(
        /invalid digest "sha256:nope"/,
      );
      const args = [
        'content',
        'ingest',
        '--label',
        GC_ROOT,
        '--expected-size',
        String(data.length),
        '--expected-digest',
        digest,
        'resumable',
      ];
      // Half the bytes: the commit fails on size and the ingest stays.
      expect(await fails(args, data.slice(0, 300_000))).toMatch(/size/);
      const active = await ok(['content', 'active']);
      expect(active).toMatch(/^REF\t+SIZE\t+AGE\t+\n/);
      expect(active).toMatch(/\nresumable\t+300kB\t+/);
      const statuses = JSON.parse(await ok(['--format', 'json', 'content', 'active', 'ref==resumable']));
      expect(statuses).toEqual([expect.objectContaining({ ref: 'resumable', offset: 300_000 })]);
      // The full input again: the 300000 bytes already held are skipped.
      await ok(args, data);
      expect(await ok(['content', 'get', digest])).toBe(data);
      expect(await ok(['content', 'active', 'ref==resumable'])).toBe('REF\tSIZE\tAGE\t\n');
      // Ingesting present content again is a no-op that does not even read stdin
      // (so a small input: the test's own write must not hit EPIPE).
      expect(await ok(args, 'not read')).toBe('');
      expect(await ok(['content', 'get', digest])).toBe(data);
    });

    it('sets and clears labels, printing the result', async () => {
      const data = `labels ${ns}`;
      const digest = sha256(data);
      await ingest('labels', data);
      expect(await ok(['content', 'label', digest, 'x=1', 'y=2'])).toBe(`${GC_ROOT},x=1,y=2\n`);
      expect(await ok(['content', 'label', digest, 'x='])).toBe(`${GC_ROOT},y=2\n`);
      expect(await ok(['content', 'label', digest])).toBe(`${GC_ROOT},y=2\n`);
      expect(JSON.parse(await ok(['--format', 'json', 'content', 'label', digest, 'z=3']))).toEqual({
        digest,
        labels: { 'containerd.io/gc.root': 'e2e', y: '2', z: '3' },
      });
      expect(await ok(['content', 'ls', '-q', 'labels.z==3'])).toBe(`${digest}\n`);
    });
  });

  describe('leases', () => {
    it('creates, lists (as ctr) and removes leases', async () => {
      expect(await ok(['leases', 'create', '--id', 'one', 'k=v'])).toBe('one\n');
      const generated = (await ok(['leases', 'create', '-x', '0'])).trim();
      expect(generated).not.toBe('');
      const table = await ok(['leases', 'ls']);
      expect(table).toMatch(/^ID +CREATED AT +LABELS +\n/);
      expect(table).toMatch(
        /\none +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d) +containerd\.io\/gc\.expire=\S+,k=v +\n/,
      );
      expect(table).toMatch(new RegExp(`\\n${generated} +\\S+ +- +\\n`));
      expect(table).toBe((await c(['leases', 'ls'])).stdout);
      expect((await ok(['leases', 'ls', '-q'])).split('\n').sort()).toEqual(['', generated, 'one'].sort());
      expect(await ok(['leases', 'ls', '-q', 'id==one'])).toBe('one\n');
      const [lease] = JSON.parse(await ok(['--format', 'json', 'leases', 'ls', 'id==one']));
      expect(lease).toMatchObject({ id: 'one', labels: { k: 'v' } });
      const expires = Date.parse(lease.labels['containerd.io/gc.expire']);
      expect(expires - Date.parse(lease.createdAt)).toBeGreaterThan(23 * 3600 * 1000);
      expect(await ok(['leases', 'rm', '--sync', 'one', generated])).toBe(`one\n${generated}\n`);
      expect(await ok(['leases', 'ls', '-q'])).toBe('');
    });

    it('fails on a duplicate and an unknown id', async () => {
      await ok(['leases', 'create', '--id', 'dup']);
      expect(await fails(['leases', 'create', '--id', 'dup'])).toMatch(/already exists/);
      expect(await fails(['leases', 'rm', 'nope'])).toMatch(/nope.*not found|not found/);
    });
  });

  describe('usage and connection errors', () => {
    it('exits 2 with the usage on a usage error, 1 when no daemon listens', async () => {
      const r = await b(['leases', 'rm']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(
        /^berth: "berth leases remove" expects at least 1 argument, got 0\n\nUsage: berth leases remove/,
      );
      const none = await berth(join(daemon.dir, 'none.sock'), ['version']);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/^berth: failed to dial ".*none\.sock"/);
    });

    it('honours --timeout', async () => {
      const r = await b(['--timeout', '1ns', 'content', 'ls']);
      expect(r).toMatchObject({ code: 1, stderr: 'berth: context deadline exceeded\n' });
    });
  });
});
