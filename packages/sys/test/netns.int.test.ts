// Root: makes a network namespace with unshare(1) as CNI does, and dials into it from this process.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, NotFoundError } from '@berth/api';
import { connectInNetns, MNT, tcpSocketInNetns, unmount } from '@berth/sys';

let dir: string;
let ns: string;
let hostServer: Server;
let port: number;
const children: ChildProcess[] = [];

const threadNetns = () => readlinkSync('/proc/thread-self/ns/net');
const openFds = () => readdirSync('/proc/self/fd').length;

function readAll(sock: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    sock.on('data', (d: Buffer) => {
      out += d.toString();
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(out));
  });
}

/** A Node server inside the namespace that answers each connection with `inside <what the client sent>`. */
async function listenInside(host: string, p: number): Promise<void> {
  const script = `require('net').createServer({ allowHalfOpen: true }, (s) => {
    let got = ''; s.on('data', (d) => { got += d; }); s.on('end', () => s.end('inside ' + got));
  }).listen(${p}, '${host}', () => console.log('ready'));`;
  const child = spawn('nsenter', [`--net=${ns}`, '--', process.execPath, '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`listener in netns exited ${code}`)));
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'berth-netns-'));
  ns = join(dir, 'ns');
  writeFileSync(ns, '');
  execFileSync('unshare', [`--net=${ns}`, 'true']);
  execFileSync('nsenter', [`--net=${ns}`, 'ip', 'link', 'set', 'lo', 'up']);
  // The host listens on the same port, so a socket made on the wrong side would be answered, not refused.
  hostServer = createServer((s) => s.end('host'));
  await new Promise<void>((r) => hostServer.listen(0, '127.0.0.1', r));
  port = (hostServer.address() as { port: number }).port;
  await listenInside('127.0.0.1', port);
});

afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await new Promise((r) => hostServer.close(r));
  try {
    unmount(ns, MNT.DETACH);
  } catch {}
  rmSync(dir, { recursive: true, force: true });
});

test('a socket made in the namespace reaches its listener, not the host one on the same port', async () => {
  const before = threadNetns();
  expect(before).not.toBe(`net:[${statSync(ns).ino}]`);
  const sock = await connectInNetns(ns, port, { allowHalfOpen: true });
  expect(threadNetns()).toBe(before);
  expect(sock.remotePort).toBe(port);
  const reply = readAll(sock);
  sock.end('hello');
  expect(await reply).toBe('inside hello');
  // The same address from this thread is the host's listener.
  expect(await readAll(connect(port, '127.0.0.1'))).toBe('host');
});

test('many connections at once each get their own answer, and the thread stays home', async () => {
  const before = threadNetns();
  const replies = await Promise.all(
    Array.from({ length: 20 }, async (_, i) => {
      const sock = await connectInNetns(ns, port, { allowHalfOpen: true });
      const reply = readAll(sock);
      sock.end(`n${i}`);
      return reply;
    }),
  );
  expect(replies).toEqual(Array.from({ length: 20 }, (_, i) => `inside n${i}`));
  expect(threadNetns()).toBe(before);
});

test('tcpSocketInNetns hands back a non-blocking, close-on-exec socket fd', () => {
  const before = threadNetns();
  const fd = tcpSocketInNetns(ns);
  try {
    expect(threadNetns()).toBe(before);
    expect(readlinkSync(`/proc/self/fd/${fd}`)).toMatch(/^socket:\[\d+\]$/);
    const flags = Number.parseInt(
      /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1],
      8,
    );
    expect(flags & 0o4000).toBe(0o4000); // O_NONBLOCK
    expect(flags & 0o2000000).toBe(0o2000000); // O_CLOEXEC
  } finally {
    closeSync(fd);
  }
  expect(() => tcpSocketInNetns(join(dir, 'gone'))).toThrow(NotFoundError);
});

test('a port nobody listens on inside is refused with Node connect error, and the fd is closed', async () => {
  const before = threadNetns();
  const fds = openFds();
  // Find a port free inside: the host's own listener proves nothing about the namespace.
  const free = port === 65535 ? port - 1 : port + 1;
  await expect(connectInNetns(ns, free)).rejects.toMatchObject({
    code: 'ECONNREFUSED',
    syscall: 'connect',
    address: '127.0.0.1',
    port: free,
    message: `connect ECONNREFUSED 127.0.0.1:${free}`,
  });
  expect(openFds()).toBe(fds);
  expect(threadNetns()).toBe(before);
});

test('bad input: typed errors naming the path, the port or the host; the thread never moved', async () => {
  const before = threadNetns();
  const missing = join(dir, 'gone');
  const err = await connectInNetns(missing, port).catch((e) => e);
  expect(err).toBeInstanceOf(NotFoundError);
  expect(err.message).toContain(missing);
  const plain = join(dir, 'plain');
  writeFileSync(plain, '');
  await expect(connectInNetns(plain, port)).rejects.toThrow(InvalidArgumentError);
  await expect(connectInNetns(plain, port)).rejects.toThrow(`${plain} is not a network namespace`);
  await expect(connectInNetns(dir, port)).rejects.toThrow(`${dir} is not a network namespace`);
  for (const bad of [0, -1, 65536, 80.5, Number.NaN]) {
    const e = await connectInNetns(ns, bad).catch((x) => x);
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toContain(`invalid port ${bad}`);
  }
  await expect(connectInNetns(ns, port, { host: 'localhost' })).rejects.toThrow('invalid host "localhost"');
  expect(threadNetns()).toBe(before);
});

test('IPv6: a socket of family 6 reaches ::1 inside the namespace', async () => {
  await listenInside('::1', port);
  const sock = await connectInNetns(ns, port, { host: '::1', allowHalfOpen: true });
  expect(sock.remoteAddress).toBe('::1');
  const reply = readAll(sock);
  sock.end('six');
  expect(await reply).toBe('inside six');
});
