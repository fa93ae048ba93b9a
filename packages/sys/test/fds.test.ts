import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dup, getWinsize, listenUnix, pipe, receiveFd, setNonblocking, setWinsize } from '@berth/sys';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'berth-fds-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('pipe carries bytes from its write end to its read end, and dup shares it', () => {
  const [r, w] = pipe();
  const w2 = dup(w);
  try {
    writeSync(w, 'ab');
    writeSync(w2, 'cd');
    const buf = Buffer.alloc(8);
    expect(buf.subarray(0, readSync(r, buf)).toString()).toBe('abcd');
  } finally {
    for (const fd of [r, w, w2]) closeSync(fd);
  }
});

test('listenUnix refuses a path that exists, and receiveFd says EAGAIN before anyone connects', () => {
  const path = join(dir, 's.sock');
  const fd = listenUnix(path, { nonblocking: true });
  try {
    expect(() => listenUnix(path)).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }));
    expect(() => receiveFd(fd)).toThrow(expect.objectContaining({ code: 'EAGAIN' }));
  } finally {
    closeSync(fd);
  }
  expect(() => listenUnix(join(dir, 'x'.repeat(120)))).toThrow(
    expect.objectContaining({ code: 'ENAMETOOLONG' }),
  );
});

// A peer that opens a pty and sends its master over the socket, as runc does with --console-socket.
const SENDER = `
import os, socket, sys
m, s = os.openpty()
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(sys.argv[1])
if sys.argv[2] == 'fd':
    socket.send_fds(c, [b'/dev/pts/x'], [m])
else:
    c.send(b'no fd here')
c.close()
os.write(s, b'from the slave')
os.close(m)
sys.stdin.read()
`;

function sender(path: string, mode: 'fd' | 'nofd') {
  const child = spawn('python3', ['-c', SENDER, path, mode], { stdio: ['pipe', 'ignore', 'inherit'] });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return { child, exited };
}

async function waitFor<T>(fn: () => T): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return fn();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || i > 500) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

test('receiveFd takes a pty master sent with SCM_RIGHTS; setWinsize resizes it', async () => {
  const path = join(dir, 'console.sock');
  const lfd = listenUnix(path, { nonblocking: true });
  const { child, exited } = sender(path, 'fd');
  try {
    const master = await waitFor(() => receiveFd(lfd));
    try {
      setWinsize(master, { rows: 33, cols: 101 });
      expect(getWinsize(master)).toEqual({ rows: 33, cols: 101 });
      // What the peer wrote on the slave comes out of the master we received.
      const buf = Buffer.alloc(64);
      await new Promise((r) => setTimeout(r, 50));
      const n = await waitFor(() => readSync(master, buf));
      expect(buf.subarray(0, n).toString()).toContain('from the slave');
    } finally {
      closeSync(master);
    }
  } finally {
    child.stdin!.end();
    await exited;
    closeSync(lfd);
  }
});

test('receiveFd answers ENOMSG when the peer sends bytes without a descriptor', async () => {
  const path = join(dir, 'console.sock');
  const lfd = listenUnix(path, { nonblocking: true });
  const { child, exited } = sender(path, 'nofd');
  try {
    await expect(waitFor(() => receiveFd(lfd))).rejects.toThrow(expect.objectContaining({ code: 'ENOMSG' }));
  } finally {
    child.stdin!.end();
    await exited;
    closeSync(lfd);
  }
});

test('setWinsize on something that is not a terminal is ENOTTY', () => {
  const [r, w] = pipe();
  try {
    expect(() => setWinsize(r, { rows: 1, cols: 1 })).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
    expect(() => getWinsize(w)).toThrow(expect.objectContaining({ code: 'ENOTTY' }));
  } finally {
    closeSync(r);
    closeSync(w);
  }
});

test('setNonblocking makes a full pipe answer EAGAIN instead of blocking, for every duplicate', () => {
  const [r, w] = pipe();
  const w2 = dup(w);
  try {
    setNonblocking(w, true);
    const chunk = Buffer.alloc(65536, 1);
    expect(() => {
      for (let i = 0; i < 64; i++) writeSync(w2, chunk);
    }).toThrow(expect.objectContaining({ code: 'EAGAIN' }));
    setNonblocking(w, false);
    expect(readFileSyncFlags(w)).toBe(false);
  } finally {
    for (const fd of [r, w, w2]) closeSync(fd);
  }
  expect(() => setNonblocking(1 << 20, true)).toThrow(expect.objectContaining({ code: 'EBADF' }));
});

function readFileSyncFlags(fd: number): boolean {
  const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
  const flags = Number.parseInt(/flags:\s+(\d+)/.exec(info)![1], 8);
  return (flags & 0o4000) !== 0;
}
