/**
 * The foundation's promise, checked the way a user would: the stock containerd `ctr`
 * runs the same script against berthd and against Debian's containerd, and every
 * command's exit code, stdout and stderr must agree (times and ages normalised).
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '@berth/client';
import { containerdInstalled, ctr, type Daemon, startBerthd, startContainerd } from '@berth/testkit';

const NS = 'e2e';
const BLOB = 'hello from the foundation\n';
const BLOB_DIGEST = 'sha256:7a0ec95a81cb4e8ec6de0ff2ff040de3e9faea7dc80a2f3af366079f10146251';
const MISSING = `sha256:${'0'.repeat(64)}`;

interface Step {
  args: string[];
  input?: string;
  /** containerd lists these rows in the order of a hash of their backing ref: compare them sorted. */
  unordered?: boolean;
}

/** The script: every foundation command of ctr, happy paths and error paths. */
function script(): Step[] {
  return [
    { args: ['namespaces', 'create', NS, 'team=core'] },
    { args: ['namespaces', 'create', NS] },
    { args: ['namespaces', 'create', 'Bad_Name!'] },
    { args: ['namespaces', 'ls'] },
    { args: ['namespaces', 'label', NS, 'tier=gold'] },
    { args: ['namespaces', 'label', NS, 'team='] },
    { args: ['namespaces', 'ls'] },
    { args: ['namespaces', 'label', 'fresh', 'made=by-label'] },
    { args: ['namespaces', 'ls'] },
    { args: ['namespaces', 'rm', 'fresh'] },
    { args: ['-n', NS, 'content', 'ingest', 'ref-1'], input: BLOB },
    // ctr ingests without a lease: root the blob before any deletion lets a collection take it.
    { args: ['-n', NS, 'content', 'label', BLOB_DIGEST, 'containerd.io/gc.root=e2e'] },
    { args: ['-n', NS, 'content', 'ls'] },
    { args: ['-n', NS, 'content', 'ls', '-q'] },
    { args: ['-n', NS, 'content', 'get', BLOB_DIGEST] },
    { args: ['-n', NS, 'content', 'get', MISSING] },
    { args: ['-n', NS, 'content', 'label', BLOB_DIGEST, 'a=1', 'b=2'] },
    { args: ['-n', NS, 'content', 'label', BLOB_DIGEST, 'a='] },
    { args: ['-n', NS, 'content', 'ls'] },
    { args: ['-n', NS, 'content', 'ls', 'labels.b==2'] },
    { args: ['-n', NS, 'content', 'ls', 'labels.b==3'] },
    { args: ['-n', 'other', 'content', 'get', BLOB_DIGEST] },
    { args: ['-n', NS, 'content', 'ingest', '--expected-digest', MISSING, 'ref-2'], input: 'wrong bytes' },
    { args: ['-n', NS, 'content', 'ingest', '--expected-size', '3', 'ref-3'], input: 'four' },
    { args: ['-n', NS, 'content', 'active'], unordered: true },
    { args: ['-n', NS, 'leases', 'create', '--id', 'lease-1', 'owner=e2e'] },
    { args: ['-n', NS, 'leases', 'create', '--id', 'lease-1'] },
    { args: ['-n', NS, 'leases', 'create', '--id', 'lease-2', '--expires', '0'] },
    { args: ['-n', NS, 'leases', 'ls'] },
    { args: ['-n', NS, 'leases', 'ls', '-q'] },
    { args: ['-n', NS, 'leases', 'rm', 'lease-1'] },
    { args: ['-n', NS, 'leases', 'rm', 'lease-404'] },
    { args: ['-n', NS, 'leases', 'ls', '-q'] },
    { args: ['namespaces', 'rm', NS] },
    { args: ['-n', NS, 'leases', 'rm', 'lease-2'] },
    { args: ['-n', NS, 'content', 'rm', BLOB_DIGEST] },
    { args: ['-n', NS, 'content', 'rm', BLOB_DIGEST] },
    { args: ['-n', NS, 'content', 'ls', '-q'] },
    { args: ['namespaces', 'rm', NS] },
    { args: ['namespaces', 'rm', NS] },
    { args: ['namespaces', 'ls', '-q'] },
  ];
}

/**
 * Masks what legitimately differs between two daemons: times, ages, and the order of label
 * lists (ctr prints some from a Go map, in random order).
 */
function normalise(text: string): string {
  return text
    .replace(/[^\s=,]+=[^\s,]*(?:,[^\s=,]+=[^\s,]*)+/g, (labels) => labels.split(',').sort().join(','))
    .replace(/\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})/g, '<TIME>')
    .replace(
      /(Less than a second|About a minute|About an hour|\d+ (seconds|minutes|hours|days))( ago)?/g,
      '<AGE>',
    )
    .replace(/[ \t]+/g, ' ')
    .replace(/ +$/gm, '');
}

async function transcript(address: string): Promise<string[]> {
  const out: string[] = [];
  for (const step of script()) {
    const r = await ctr(address, step.args, { input: step.input });
    let stdout = normalise(r.stdout);
    if (step.unordered) {
      const [header, ...rows] = stdout.trimEnd().split('\n');
      stdout = `${[header, ...rows.sort()].join('\n')}\n`;
    }
    out.push(`$ ctr ${step.args.join(' ')}\nexit ${r.code}\n${stdout}${normalise(r.stderr)}`);
  }
  return out;
}

const describeIf = containerdInstalled() ? describe : describe.skip;

describeIf('stock ctr: berthd answers as containerd does', () => {
  let berthd: Daemon;
  let containerd: Daemon;

  beforeAll(async () => {
    [berthd, containerd] = await Promise.all([startBerthd(), startContainerd()]);
  });
  afterAll(async () => {
    await Promise.all([berthd?.dispose(), containerd?.dispose()]);
  });

  test('the foundation script gives identical transcripts', async () => {
    const expected = await transcript(containerd.address);
    const actual = await transcript(berthd.address);
    expect(actual.join('\n')).toBe(expected.join('\n'));
  });

  test('ctr version reports berthd as the server', async () => {
    const r = await ctr(berthd.address, ['version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Server:\s+Version:\s+\S+\s+Revision:\s*\S*\s+UUID:\s+[0-9a-f-]{36}/);
  });

  test('ctr plugins ls lists the foundation plugins as ok', async () => {
    const r = await ctr(berthd.address, ['plugins', 'ls']);
    expect(r.code).toBe(0);
    const rows = r.stdout
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/));
    const status = (type: string, id: string) => rows.find((row) => row[0] === type && row[1] === id)?.at(-1);
    expect(status('io.containerd.content.v1', 'content')).toBe('ok');
    for (const id of ['content', 'leases', 'namespaces', 'introspection', 'version']) {
      expect(status('io.containerd.grpc.v1', id)).toBe('ok');
    }
    const filtered = await ctr(berthd.address, ['plugins', 'ls', 'type==io.containerd.grpc.v1']);
    expect(filtered.stdout).not.toMatch(/io\.containerd\.content\.v1/);
    expect(filtered.stdout).toMatch(/io\.containerd\.grpc\.v1\s+content/);
  });

  test('a second writer on a busy ref is refused as unavailable; ctr waits for the ref as with containerd', async () => {
    const { spawn } = await import('node:child_process');
    const client = connect(berthd.address);
    const ctx = { namespace: 'default' };
    const first = await client.content.writer(ctx, { ref: 'busy-ref' });
    try {
      await first.write(Buffer.from('partial'));
      const err = await client.content.writer(ctx, { ref: 'busy-ref' }).then(
        () => undefined,
        (e: unknown) => e as { code: string; message: string },
      );
      expect(err?.code).toBe('ERR_UNAVAILABLE');
      expect(err?.message).toContain('busy-ref');

      // ctr's OpenWriter retries on Unavailable: it must still be waiting while the ref is held...
      // Its stdin is a regular file holding the same bytes, so it can seek past what is there.
      const file = join(berthd.dir, 'partial');
      writeFileSync(file, 'partial');
      const fd = openSync(file, 'r');
      const waiting = spawn('/usr/bin/ctr', ['--address', berthd.address, 'content', 'ingest', 'busy-ref'], {
        stdio: [fd, 'ignore', 'inherit'],
      });
      closeSync(fd);
      const exited = new Promise<number | null>((r) => waiting.once('exit', (code) => r(code)));
      await new Promise((r) => setTimeout(r, 1500));
      expect(waiting.exitCode).toBeNull();
      // ...and go on once the holder lets go: it resumes the 7 bytes already written and commits them.
      await first.close();
      expect(await exited).toBe(0);
      const ls = await ctr(berthd.address, ['content', 'ls', '-q']);
      expect(ls.stdout).toContain(createHash('sha256').update('partial').digest('hex'));
    } finally {
      await first.close().catch(() => {});
      client.close();
    }
  });
});
