import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  lgetxattr,
  llistxattr,
  lremovexattr,
  lsetxattr,
  MNT,
  MS,
  mknod,
  mountAll,
  parseMountOptions,
  S_IFCHR,
  unmountAll,
  withTempMount,
} from '@berth/sys';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-sys-'));
});
afterEach(async () => {
  await unmountAll(join(dir, 'mnt'), MNT.DETACH).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

test('option words split into flags, propagation and data as mount(8) reads them', () => {
  const p = parseMountOptions(['ro', 'rbind', 'nosuid', 'rprivate', 'lowerdir=/a:/b', 'rw', 'index=off']);
  expect(p.flags).toBe(MS.BIND | MS.REC | MS.NOSUID);
  expect(p.propagation).toBe(MS.PRIVATE | MS.REC);
  expect(p.data).toEqual(['lowerdir=/a:/b', 'index=off']);
});

test('a read-only bind mount refuses writes, and unmountAll undoes it', async () => {
  const src = join(dir, 'src');
  const mnt = join(dir, 'mnt');
  mkdirSync(src);
  mkdirSync(mnt);
  writeFileSync(join(src, 'f'), 'x');
  await mountAll([{ type: 'bind', source: src, options: ['ro', 'rbind'] }], mnt);
  expect(readFileSync(join(mnt, 'f'), 'utf8')).toBe('x');
  expect(() => writeFileSync(join(mnt, 'g'), 'y')).toThrow(expect.objectContaining({ code: 'EROFS' }));
  await unmountAll(mnt);
  expect(() => statSync(join(mnt, 'f'))).toThrow(expect.objectContaining({ code: 'ENOENT' }));
});

test('an overlay of 200 lower layers mounts although its options exceed a page', async () => {
  const lowers: string[] = [];
  for (let i = 0; i < 200; i++) {
    const l = join(dir, 'snapshots', String(1000 + i), 'fs');
    mkdirSync(l, { recursive: true });
    writeFileSync(join(l, `layer-${i}`), String(i));
    lowers.unshift(l);
  }
  const upper = join(dir, 'snapshots', 'upper', 'fs');
  const work = join(dir, 'snapshots', 'upper', 'work');
  mkdirSync(upper, { recursive: true });
  mkdirSync(work, { recursive: true });
  const options = [`lowerdir=${lowers.join(':')}`, `upperdir=${upper}`, `workdir=${work}`, 'index=off'];
  expect(options.join(',').length).toBeGreaterThan(4096);
  const files = await withTempMount([{ type: 'overlay', source: 'overlay', options }], async (root) => {
    writeFileSync(join(root, 'new'), 'upper');
    return readFileSync(join(root, 'layer-0'), 'utf8') + readFileSync(join(root, 'layer-199'), 'utf8');
  });
  expect(files).toBe('0199');
  expect(readFileSync(join(upper, 'new'), 'utf8')).toBe('upper');
});

test('a failing mount names the target and the errno', async () => {
  await expect(
    mountAll([{ type: 'bind', source: join(dir, 'absent'), options: ['rbind'] }], join(dir, 'nowhere')),
  ).rejects.toMatchObject({
    code: 'ENOENT',
    syscall: 'mount',
  });
});

test('xattrs are set, read, listed and removed; a missing one reads as undefined', () => {
  const f = join(dir, 'f');
  writeFileSync(f, '');
  lsetxattr(f, 'trusted.overlay.opaque', 'y');
  expect(lgetxattr(f, 'trusted.overlay.opaque')?.toString()).toBe('y');
  expect(llistxattr(f)).toContain('trusted.overlay.opaque');
  lremovexattr(f, 'trusted.overlay.opaque');
  expect(lgetxattr(f, 'trusted.overlay.opaque')).toBeUndefined();
  expect(() => lgetxattr(join(dir, 'absent'), 'user.x')).toThrow(/ENOENT/);
});

test('mknod makes the 0/0 character device overlay uses as a whiteout', () => {
  const w = join(dir, 'whiteout');
  mknod(w, S_IFCHR | 0o000, 0, 0);
  const st = statSync(w);
  expect(st.isCharacterDevice()).toBe(true);
  expect(st.rdev).toBe(0);
  expect(() => mknod(w, S_IFCHR, 0, 0)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
});

test('a subreaper adopts and reaps an orphaned grandchild with its exit status', () => {
  // In a separate Node process, so the test runner's own children are never reaped by us.
  const addon = join(__dirname, '..', 'build', 'Release', 'sys.node');
  const child = spawnSync(
    process.execPath,
    [
      '-e',
      `const s = require(${JSON.stringify(addon)});
       s.setChildSubreaper();
       const { execFileSync } = require('child_process');
       const ok = Number(execFileSync('sh', ['-c', 'sleep 0.2 >/dev/null 2>&1 & echo $!']).toString());
       const killed = Number(execFileSync('sh', ['-c', 'sleep 30 >/dev/null 2>&1 & echo $!']).toString());
       process.kill(killed, 'SIGKILL');
       const out = {};
       const deadline = Date.now() + 5000;
       while ((!out.ok || !out.killed) && Date.now() < deadline) {
         out.ok ??= s.waitid(0, ok, false) ?? undefined;
         out.killed ??= s.waitid(0, killed, false) ?? undefined;
       }
       console.log(JSON.stringify({ ok: out.ok, killed: out.killed, okPid: ok, killedPid: killed }));`,
    ],
    { encoding: 'utf8' },
  );
  expect(child.status).toBe(0);
  const r = JSON.parse(child.stdout);
  expect(r.ok).toEqual({ pid: r.okPid, exitStatus: 0 });
  expect(r.killed).toEqual({ pid: r.killedPid, exitStatus: 137, signal: 9 });
});
