/**
 * Killing a daemon at a chosen moment rather than after a guessed sleep: a runc that waits
 * at a subcommand while told to, ingests read from the content store's directory, and the
 * checks a restarted daemon must pass (every blob matches its digest).
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ctr } from './daemons';

/**
 * Polls `check` (every 10 ms unless `everyMs` says otherwise: a check that runs a process wants
 * less) until it holds; throws naming `what`, and what `detail()` adds, after `limitMs`.
 */
export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  limitMs = 20_000,
  opts: { everyMs?: number; detail?: () => string } = {},
): Promise<void> {
  const until = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > until)
      throw new Error(`timed out waiting for ${what} ${opts.detail?.() ?? ''}`.trimEnd());
    await new Promise((r) => setTimeout(r, opts.everyMs ?? 10));
  }
}

export type RuncCommand = 'create' | 'start' | 'exec' | 'delete' | 'kill';

/**
 * A runc wrapper named `runc` in its own directory: put `dir` first on a daemon's PATH and
 * every shim it starts (containerd's runc shim, berth's) runs it. While a command is held
 * for a container id, a call of that command naming that id stops there (writing its pid
 * to `entered-<cmd>`) until released, then runs the real runc; anything else is runc.
 */
export interface RuncGate {
  /** The directory holding the wrapper: prepend it to the daemon's PATH. */
  readonly dir: string;
  readonly binary: string;
  hold(cmd: RuncCommand, id: string): void;
  release(cmd: RuncCommand): void;
  /** Kills the held call (SIGKILL, by the pid it wrote): the runc command never runs. */
  abort(cmd: RuncCommand): void;
  releaseAll(): void;
  /** Whether a held call reached the gate (since the last release of that command). */
  entered(cmd: RuncCommand): boolean;
}

const RUNC_COMMANDS: readonly RuncCommand[] = ['create', 'start', 'exec', 'delete', 'kill'];

/** The real runc's path (the wrapper must not find itself). */
function realRunc(): string {
  for (const d of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':')) {
    const p = join(d, 'runc');
    if (d && existsSync(p)) return p;
  }
  throw new Error('runc is not on PATH');
}

export function runcGate(parent: string, runc = realRunc()): RuncGate {
  const dir = join(parent, 'runc-gate');
  mkdirSync(dir, { recursive: true });
  const binary = join(dir, 'runc');
  writeFileSync(
    binary,
    [
      '#!/bin/sh',
      'held() {',
      `  f=${dir}/hold-$1; [ -e "$f" ] || return 1`,
      '  want=$(cat "$f"); shift',
      '  for x in "$@"; do [ "$x" = "$want" ] && return 0; done; return 1',
      '}',
      'for a in "$@"; do',
      '  case "$a" in',
      `    ${RUNC_COMMANDS.join('|')})`,
      '      if held "$a" "$@"; then',
      `        echo $$ > ${dir}/entered-$a`,
      `        while [ -e ${dir}/hold-$a ]; do sleep 0.02; done`,
      '      fi',
      '      break ;;',
      '  esac',
      'done',
      `exec ${runc} "$@"`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  const release = (c: RuncCommand) => {
    rmSync(join(dir, `hold-${c}`), { force: true });
    rmSync(join(dir, `entered-${c}`), { force: true });
  };
  return {
    dir,
    binary,
    hold: (c, id) => writeFileSync(join(dir, `hold-${c}`), id),
    release,
    abort: (c) => {
      try {
        process.kill(Number(readFileSync(join(dir, `entered-${c}`), 'utf8')), 'SIGKILL');
      } catch {
        // never entered, or gone already
      }
      release(c);
    },
    releaseAll: () => {
      for (const c of RUNC_COMMANDS) release(c);
    },
    entered: (c) => existsSync(join(dir, `entered-${c}`)),
  };
}

/** An ingest in progress as the content store keeps it on disk (containerd's layout, berth's too). */
export interface DiskIngest {
  ref: string;
  /** Bytes written so far (the size of its `data` file). */
  offset: number;
}

/** The ingests under `<root>/io.containerd.content.v1.content/ingest`, read from disk. */
export function diskIngests(root: string): DiskIngest[] {
  const dir = join(root, 'io.containerd.content.v1.content', 'ingest');
  const out: DiskIngest[] = [];
  for (const name of existsSync(dir) ? readdirSync(dir) : []) {
    try {
      const ref = readFileSync(join(dir, name, 'ref'), 'utf8');
      out.push({ ref, offset: statSync(join(dir, name, 'data')).size });
    } catch {
      // being created or committed right now
    }
  }
  return out;
}

/** The committed blobs on disk: `<root>/io.containerd.content.v1.content/blobs/sha256/*`. */
export function diskBlobs(root: string): string[] {
  const dir = join(root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
  return existsSync(dir) ? readdirSync(dir).map((h) => `sha256:${h}`) : [];
}

/** The digest of what `ctr content get` streams for a blob. */
export function contentDigest(address: string, namespace: string, digest: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/ctr', ['--address', address, '-n', namespace, 'content', 'get', digest], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const hash = createHash('sha256');
    let err = '';
    child.stdout.on('data', (b: Buffer) => hash.update(b));
    child.stderr.on('data', (b: Buffer) => {
      err += b;
    });
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0
        ? resolve(`sha256:${hash.digest('hex')}`)
        : reject(new Error(`ctr content get ${digest}: exit ${code}: ${err.trim()}`)),
    );
  });
}

export interface ContentCheck {
  /** Blobs listed by `ctr content ls`. */
  checked: number;
  /** Blobs whose content does not hash to their digest. */
  bad: string[];
  /** Blobs listed but not readable (`ctr content get` failed), with its error. */
  unreadable: string[];
}

/** Reads every blob a namespace lists (`ctr content ls -q`) and hashes it. */
export async function checkContent(address: string, namespace: string): Promise<ContentCheck> {
  const ls = await ctr(address, ['-n', namespace, 'content', 'ls', '-q']);
  if (ls.code !== 0) throw new Error(`ctr content ls: exit ${ls.code}: ${ls.stderr}`);
  const digests = ls.stdout.split('\n').filter(Boolean);
  const bad: string[] = [];
  const failed = new Map<string, string>();
  for (let i = 0; i < digests.length; i += 4) {
    await Promise.all(
      digests.slice(i, i + 4).map(async (d) => {
        try {
          const got = await contentDigest(address, namespace, d);
          if (got !== d) bad.push(`${d} (read ${got})`);
        } catch (err) {
          failed.set(d, (err as Error).message);
        }
      }),
    );
  }
  // A blob nothing references may be collected between the list and the read (a restarted
  // daemon collects at its scheduler's startup delay, as containerd does): gone is not unreadable.
  const listed =
    failed.size === 0
      ? new Set<string>()
      : new Set((await ctr(address, ['-n', namespace, 'content', 'ls', '-q'])).stdout.split('\n'));
  const unreadable = [...failed].filter(([d]) => listed.has(d)).map(([d, why]) => `${d}: ${why}`);
  return { checked: digests.length, bad, unreadable };
}

/** The tasks `ctr tasks ls` lists in a namespace, id -> status. */
export async function listTasks(address: string, namespace: string): Promise<Map<string, string>> {
  const r = await ctr(address, ['-n', namespace, 'tasks', 'ls']);
  if (r.code !== 0) throw new Error(`ctr tasks ls: exit ${r.code}: ${r.stderr}`);
  const out = new Map<string, string>();
  for (const line of r.stdout.split('\n').slice(1)) {
    const [id, , status] = line.trim().split(/\s+/);
    if (id && status) out.set(id, status);
  }
  return out;
}
