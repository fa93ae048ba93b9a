/**
 * berthd killed with SIGKILL in the middle of an ingest: after a restart on the same root
 * the partial ingest is listed with its offset, the stock client resumes it from there,
 * and no blob whose digest does not match is ever visible.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ctr, type Daemon, makeTempDir, removeDir, startBerthd } from '@berth/testkit';

const SIZE = 48 * 1024 * 1024;
const FIRST = 20 * 1024 * 1024;

/** Parses ctr's humanised size column ("20 MiB", "512kB") into bytes, roughly. */
function parseSize(text: string): number {
  const m = /^([\d.]+)\s*([kMGT]?i?B)$/.exec(text.trim());
  if (!m) return Number.NaN;
  const unit: Record<string, number> = {
    B: 1,
    kB: 1e3,
    KiB: 1024,
    MB: 1e6,
    MiB: 1024 ** 2,
    GB: 1e9,
    GiB: 1024 ** 3,
  };
  return Number(m[1]) * (unit[m[2]!] ?? Number.NaN);
}

async function activeOffset(address: string, ref: string): Promise<number | undefined> {
  const r = await ctr(address, ['content', 'active']);
  const line = r.stdout.split('\n').find((l) => l.startsWith(`${ref}\t`) || l.startsWith(`${ref} `));
  if (!line) return undefined;
  return parseSize(line.split('\t').filter(Boolean)[1] ?? '');
}

describe('SIGKILL during an ingest', () => {
  let dir: string;
  let daemon: Daemon | undefined;

  beforeAll(() => {
    dir = makeTempDir('berth-crash-');
  });
  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    removeDir(dir);
  });

  test('the partial ingest survives, resumes from its offset and commits only the right digest', async () => {
    const data = randomBytes(SIZE);
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    const file = join(dir, 'blob');
    writeFileSync(file, data);

    daemon = await startBerthd({ dir });
    const ingest = spawn(
      '/usr/bin/ctr',
      [
        '--address',
        daemon.address,
        'content',
        'ingest',
        '--expected-size',
        String(SIZE),
        '--expected-digest',
        digest,
        'big-ref',
      ],
      { stdio: ['pipe', 'ignore', 'pipe'] },
    );
    ingest.stdin.on('error', () => {}); // the pipe breaks when berthd dies
    ingest.stdin.write(data.subarray(0, FIRST));
    let offset: number | undefined;
    for (let i = 0; i < 200; i++) {
      offset = await activeOffset(daemon.address, 'big-ref');
      if (offset !== undefined && offset >= FIRST * 0.99) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(offset).toBeGreaterThanOrEqual(FIRST * 0.99);

    await daemon.stop('SIGKILL');
    ingest.kill('SIGKILL');
    await new Promise((r) => (ingest.exitCode !== null ? r(null) : ingest.once('exit', r)));

    daemon = await startBerthd({ dir });
    const resumedAt = await activeOffset(daemon.address, 'big-ref');
    expect(resumedAt).toBeGreaterThan(0);
    expect((await ctr(daemon.address, ['content', 'ls', '-q'])).stdout.trim()).toBe('');

    // ctr resumes by seeking its (regular file) stdin to the offset berthd reports.
    const fd = openSync(file, 'r');
    const resumed = await new Promise<number>((resolve) => {
      const child = spawn(
        '/usr/bin/ctr',
        [
          '--address',
          daemon!.address,
          'content',
          'ingest',
          '--expected-size',
          String(SIZE),
          '--expected-digest',
          digest,
          'big-ref',
        ],
        { stdio: [fd, 'ignore', 'inherit'] },
      );
      child.once('exit', (code) => resolve(code ?? -1));
    });
    closeSync(fd);
    expect(resumed).toBe(0);

    expect((await ctr(daemon.address, ['content', 'ls', '-q'])).stdout.trim()).toBe(digest);
    expect(await activeOffset(daemon.address, 'big-ref')).toBeUndefined();
    const got = await new Promise<string>((resolve, reject) => {
      const child = spawn('/usr/bin/ctr', ['--address', daemon!.address, 'content', 'get', digest], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const hash = createHash('sha256');
      child.stdout.on('data', (b: Buffer) => hash.update(b));
      child.once('error', reject);
      child.once('exit', () => resolve(`sha256:${hash.digest('hex')}`));
    });
    expect(got).toBe(digest);
  });

  test('an ingest committed with the wrong digest never becomes visible', async () => {
    daemon ??= await startBerthd({ dir });
    const r = await ctr(
      daemon.address,
      ['content', 'ingest', '--expected-digest', `sha256:${'1'.repeat(64)}`, 'liar'],
      {
        input: 'not what was promised',
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/unexpected commit digest .* failed precondition/);
    const ls = await ctr(daemon.address, ['content', 'ls', '-q']);
    expect(ls.stdout).not.toContain(createHash('sha256').update('not what was promised').digest('hex'));
  });
});

describe('SIGKILL with nothing running', () => {
  let dir: string;
  let daemon: Daemon | undefined;

  beforeAll(() => {
    dir = makeTempDir('berth-crash-idle-');
  });
  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    removeDir(dir);
  });

  // The killed daemon leaves `<address>` and `<address>.ttrpc` behind. Removing the stale
  // ttrpc socket once made the next lazy require() of a pnpm dependency fail
  // ("Cannot find module 'lodash.camelcase'"), so every first restart of an idle daemon died.
  test('restarts on the first try, every time', async () => {
    for (let round = 0; round < 3; round++) {
      daemon = await startBerthd({ dir });
      expect((await ctr(daemon.address, ['version'])).code).toBe(0);
      await daemon.stop('SIGKILL');
      daemon = undefined;
    }
  });
});
