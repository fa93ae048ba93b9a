/**
 * What the task tests share: a busybox rootfs, an OCI spec as runc writes it, fifos to
 * read a container's output, and finding (and killing) the shims and containers a test
 * started, by the namespace only that test uses.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { Socket } from 'node:net';
import * as path from 'node:path';

// berthd keeps its shim warm after the last task (10 s by default); these tests check
// that shims exit once their tasks are gone, so theirs go at once (set before any daemon
// or shim starts: both inherit it).
process.env.BERTH_SHIM_IDLE_MS ??= '0';

export const RUNC_SHIM = '/usr/bin/containerd-shim-runc-v2';
export const BUSYBOX = '/bin/busybox';

/** Root, runc and Debian's runc shim: what every task test needs. */
export const canRunTasks = (): boolean =>
  process.getuid?.() === 0 && fs.existsSync(RUNC_SHIM) && fs.existsSync(BUSYBOX);

/** A rootfs with a static busybox and its applets as symlinks (made inside it, so they resolve there). */
export function makeBusyboxRootfs(dir: string): string {
  // The mount points runc's default spec needs, for a rootfs mounted read-only.
  for (const d of ['bin', 'tmp', 'proc', 'sys', 'dev', 'etc', 'root'])
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(dir, 'bin', 'busybox'));
  fs.chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  execFileSync('chroot', [dir, '/bin/busybox', '--install', '-s', '/bin']);
  return dir;
}

let runcSpec: Record<string, any> | undefined;

/** runc's default spec (namespaces, mounts, capabilities) running `args` on `root`. */
export function ociSpec(
  id: string,
  args: string[],
  opts: { root?: string; readonly?: boolean; terminal?: boolean } = {},
): Record<string, any> {
  if (!runcSpec) {
    const dir = fs.mkdtempSync('/tmp/berth-spec-');
    try {
      execFileSync('runc', ['spec', '--bundle', dir]);
      runcSpec = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  const spec = structuredClone(runcSpec!);
  spec.process.args = args;
  spec.process.terminal = opts.terminal ?? false;
  spec.root = { path: opts.root ?? 'rootfs', readonly: opts.readonly ?? true };
  spec.hostname = id;
  return spec;
}

export const SPEC_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';

export const specAny = (spec: object) => ({
  typeUrl: SPEC_TYPE_URL,
  value: Buffer.from(JSON.stringify(spec)),
});

/** A fifo the test reads: what a container writes to its stdout or stderr. */
export interface FifoReader {
  readonly path: string;
  text(): string;
  close(): void;
}

export function openFifo(file: string): FifoReader {
  execFileSync('mkfifo', [file]);
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  const socket = new Socket({ fd, readable: true, writable: false });
  let text = '';
  socket.on('data', (b) => {
    text += b.toString();
  });
  socket.on('error', () => {});
  return { path: file, text: () => text, close: () => socket.destroy() };
}

export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  limitMs = 20_000,
): Promise<void> {
  const until = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A process is gone once /proc has no entry for it or it is a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** Shim processes serving a namespace (their argv carries `-namespace <ns>`). */
export function shimPids(namespace: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      const at = argv.indexOf('-namespace');
      // Go shims run as themselves; berth's shim is a script run by node.
      const shim = argv.slice(0, 2).some((a) => /(^|\/)containerd-shim-[^/]+$/.test(a));
      if (shim && at !== -1 && argv[at + 1] === namespace) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** Mount points at or below `dir`. */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)));
}

/** runc's state roots for a namespace: containerd's runc shim's, and berth's shim's. */
export const runcRoots = (namespace: string): string[] => [
  `/run/containerd/runc/${namespace}`,
  `/run/berth/runc/${namespace}`,
];

/** Containers runc still knows in a namespace (under either shim's root). */
export function runcContainers(namespace: string): string[] {
  return runcRoots(namespace).flatMap((root) => {
    try {
      return fs.readdirSync(root);
    } catch {
      return [];
    }
  });
}

/** The sockets named by the `address` files of the bundles below `dir`. */
function shimSockets(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 6) return;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, depth + 1);
      else if (e.name === 'address' && e.isFile())
        out.push(
          fs
            .readFileSync(p, 'utf8')
            .trim()
            .replace(/^unix:\/\//, ''),
        );
    }
  };
  walk(dir, 0);
  return out;
}

/**
 * Takes down whatever a test left in its namespace: shims still there after 5 s (SIGKILL, by pid), containers
 * (runc delete -f), runc's state directory, mounts below `dir`, the killed shims' sockets. Returns what it had to clean, so a test can
 * assert there was nothing.
 */
export async function killLeftovers(
  namespace: string,
  dir?: string,
): Promise<{ shims: number[]; containers: string[]; mounts: string[] }> {
  // A shim that was just shut down may still be on its way out.
  await waitFor('shims to exit', () => shimPids(namespace).length === 0, 5000).catch(() => {});
  const sockets = dir ? shimSockets(dir) : [];
  const shims = shimPids(namespace);
  for (const pid of shims) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const pid of shims) await waitFor(`shim ${pid} to die`, () => !isAlive(pid), 5000);
  // A shim killed here cannot remove its socket.
  if (shims.length > 0) for (const socket of sockets) fs.rmSync(socket, { force: true });
  const containers = runcContainers(namespace);
  for (const root of runcRoots(namespace)) {
    for (const id of fs.existsSync(root) ? fs.readdirSync(root) : []) {
      try {
        execFileSync('runc', ['--root', root, 'delete', '-f', id], { stdio: 'ignore' });
      } catch {
        // gone already
      }
    }
    fs.rmSync(root, { recursive: true, force: true });
  }
  const mounts = dir ? mountsUnder(dir) : [];
  for (const m of [...mounts].reverse()) {
    try {
      execFileSync('umount', ['-l', m], { stdio: 'ignore' });
    } catch {
      // unmounted with its parent
    }
  }
  return { shims, containers, mounts };
}
