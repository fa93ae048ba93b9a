import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { pipeline, Readable } from 'node:stream';
import { createGunzip, createGzip, constants as zc } from 'node:zlib';
import { InvalidArgumentError, NotImplementedError } from '@berth/api';
import { Decompress } from 'fzstd';
import type { Compression } from './media-types';

const GZIP_MAGIC = [0x1f, 0x8b, 0x08];
const ZSTD_MAGIC = [0x28, 0xb5, 0x2f, 0xfd];

/** Sniffs the compression from the first bytes (gzip, zstd frames or skippable frames, else none). */
export function detectCompression(head: Buffer): Compression {
  if (GZIP_MAGIC.every((b, i) => head[i] === b)) return 'gzip';
  if (ZSTD_MAGIC.every((b, i) => head[i] === b)) return 'zstd';
  if (head.length >= 8 && (head.readUInt32LE(0) & 0xfffffff0) === 0x184d2a50) return 'zstd';
  return 'none';
}

/** How zstd is decoded: Debian's `zstd` binary through a pipe (fast) or fzstd (pure JS). */
export type ZstdImplementation = 'auto' | 'binary' | 'js';

let zstdPath: string | null | undefined;
/** The `zstd` executable on PATH, or null. */
export function findZstd(): string | null {
  if (zstdPath !== undefined) return zstdPath;
  zstdPath = null;
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, 'zstd'), constants.X_OK);
      zstdPath = join(dir, 'zstd');
      break;
    } catch {
      // not here
    }
  }
  return zstdPath;
}

function toReadable(source: AsyncIterable<Buffer>): Readable {
  return source instanceof Readable ? source : Readable.from(source, { objectMode: false });
}

/** Pipes source through a Node transform; errors on either side end the iteration. */
async function* throughTransform(
  source: AsyncIterable<Buffer>,
  transform: NodeJS.ReadWriteStream,
): AsyncGenerator<Buffer> {
  const out = pipeline(toReadable(source), transform, () => {
    // errors surface through the iteration below
  }) as unknown as Readable;
  try {
    for await (const chunk of out) yield chunk as Buffer;
  } finally {
    out.destroy();
  }
}

/** Pipes source through a child process (stdin -> stdout); a non-zero exit is an error. */
async function* throughProcess(
  cmd: string,
  args: string[],
  source: AsyncIterable<Buffer>,
  what: string,
): AsyncGenerator<Buffer> {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>(
    (resolve) => {
      child.once('error', (error) => resolve({ code: null, signal: null, error }));
      child.once('close', (code, signal) => resolve({ code, signal }));
    },
  );
  let inputError: unknown;
  const input = toReadable(source);
  pipeline(input, child.stdin, (err) => {
    // EPIPE means the child stopped reading: its exit status tells why.
    if (err && (err as NodeJS.ErrnoException).code !== 'EPIPE') {
      inputError = err;
      child.kill('SIGKILL');
    }
  });
  let finished = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    const status = await exited;
    finished = true;
    if (inputError) throw inputError;
    if (status.error) throw status.error;
    if (status.code !== 0) {
      throw new InvalidArgumentError(
        `${what} failed (${status.signal ?? `exit ${status.code}`}): ${stderr.trim()}`,
      );
    }
  } finally {
    if (!finished) {
      child.kill('SIGKILL');
      input.destroy();
      await exited;
    }
  }
}

/** Pure-JS zstd decoding with fzstd (used where no `zstd` binary exists). */
async function* zstdJs(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const out: Buffer[] = [];
  const d = new Decompress((data) => {
    out.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
  const push = (chunk: Uint8Array, final: boolean) => {
    try {
      d.push(chunk, final);
    } catch (e) {
      throw new InvalidArgumentError(`zstd: ${(e as Error).message}`, { cause: e });
    }
  };
  for await (const chunk of source) {
    push(chunk, false);
    while (out.length > 0) yield out.shift()!;
  }
  push(new Uint8Array(0), true);
  while (out.length > 0) yield out.shift()!;
}

/** Reads the first bytes, then replays them ahead of the rest. */
async function peek(
  source: AsyncIterable<Buffer>,
  n: number,
): Promise<{ head: Buffer; rest: AsyncGenerator<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  let len = 0;
  let done = false;
  while (len < n) {
    const r = await it.next();
    if (r.done) {
      done = true;
      break;
    }
    seen.push(r.value);
    len += r.value.length;
  }
  const head = Buffer.concat(seen);
  async function* rest(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head;
    if (done) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield r.value;
    }
  }
  return { head, rest: rest() };
}

export interface DecompressOptions {
  zstd?: ZstdImplementation;
}

/**
 * Decompresses a layer, whatever its media type claims: the format is sniffed from the
 * magic bytes (as containerd's DecompressStream does). An empty input is an empty tar.
 */
export async function decompressStream(
  source: AsyncIterable<Buffer>,
  opts: DecompressOptions = {},
): Promise<{ compression: Compression; stream: AsyncIterable<Buffer> }> {
  const { head, rest } = await peek(source, 10);
  const compression = detectCompression(head);
  switch (compression) {
    case 'none':
      return { compression, stream: rest };
    case 'gzip':
      return { compression, stream: throughTransform(rest, createGunzip({ chunkSize: 128 * 1024 })) };
    case 'zstd': {
      const impl = opts.zstd ?? 'auto';
      const bin = impl === 'js' ? null : findZstd();
      if (impl === 'binary' && !bin) throw new NotImplementedError('zstd binary not found on PATH');
      const stream = bin ? throughProcess(bin, ['-d', '-c', '-q'], rest, 'zstd -d') : zstdJs(rest);
      return { compression, stream };
    }
  }
}

export interface CompressOptions {
  /** gzip: 1..9 (default 6, Go's default as containerd writes); zstd: 1..19 (default 3). */
  level?: number;
}

/** Compresses a stream. zstd needs the `zstd` binary (fzstd only decodes). */
export function compressStream(
  compression: Compression,
  source: AsyncIterable<Buffer>,
  opts: CompressOptions = {},
): AsyncIterable<Buffer> {
  switch (compression) {
    case 'none':
      return source;
    case 'gzip':
      return throughTransform(
        source,
        createGzip({ level: opts.level ?? zc.Z_DEFAULT_COMPRESSION, chunkSize: 128 * 1024 }),
      );
    case 'zstd': {
      const bin = findZstd();
      if (!bin) throw new NotImplementedError('zstd compression needs the zstd binary on PATH');
      return throughProcess(bin, [`-${opts.level ?? 3}`, '-c', '-q'], source, 'zstd');
    }
  }
}
