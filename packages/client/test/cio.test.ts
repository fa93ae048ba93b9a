/**
 * cio over real FIFOs, this test process playing the shim's part: it opens the other ends
 * the way a shim does (after the client opened its own), writes output, reads input.
 */
import {
  closeSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { copyIo, fifoSetOf, holdFifos, newFifoSet, removeFifoSet } from '@berth/client';
import { makeTempDir, removeDir } from '@berth/testkit';

let root: string;
beforeEach(() => {
  root = makeTempDir('berth-cio-');
});
afterEach(() => removeDir(root));

const collect = (s: PassThrough): (() => string) => {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  return () => Buffer.concat(chunks).toString();
};

/** Reads a FIFO (non-blocking, as a shim's copy loop would) until its writers are gone. */
async function drain(path: string): Promise<string> {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const buf = Buffer.alloc(4096);
  let out = '';
  try {
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      if (n === 0) return out;
      out += buf.subarray(0, n).toString();
    }
  } finally {
    closeSync(fd);
  }
}

describe('newFifoSet', () => {
  it('makes a private directory of FIFOs named after the process, none for a terminal stderr', async () => {
    const set = await newFifoSet(join(root, 'fifo'), 'c1');
    expect(set.dir!.startsWith(join(root, 'fifo', 'c1-'))).toBe(true);
    expect(lstatSync(join(root, 'fifo')).mode & 0o777).toBe(0o700);
    for (const p of [set.stdin, set.stdout, set.stderr]) expect(lstatSync(p).isFIFO()).toBe(true);
    expect(readdirSync(set.dir!).sort()).toEqual(['c1-stderr', 'c1-stdin', 'c1-stdout']);
    const tty = await newFifoSet(join(root, 'fifo'), 'c2', { terminal: true });
    expect(tty.stderr).toBe('');
    expect(tty.terminal).toBe(true);
    await removeFifoSet(set);
    await removeFifoSet(tty);
    expect(readdirSync(join(root, 'fifo'))).toEqual([]);
  });

  it('fails with the error of the directory it could not make', async () => {
    const file = join(root, 'file');
    closeSync(openSync(file, 'w'));
    await expect(newFifoSet(join(file, 'sub'), 'x')).rejects.toMatchObject({ code: 'ENOTDIR' });
  });
});

describe('removeFifoSet of a set found on a task', () => {
  it('removes only FIFOs, and their directory only when it is left empty', async () => {
    const set = await newFifoSet(root, 'p');
    const keep = join(set.dir!, 'not-a-fifo');
    closeSync(openSync(keep, 'w'));
    await removeFifoSet(fifoSetOf({ stdin: set.stdin, stdout: keep, stderr: set.stderr }));
    expect(readdirSync(set.dir!).sort()).toEqual(['not-a-fifo', 'p-stdout']);
    await removeFifoSet(fifoSetOf({ stdout: set.stdout }));
    expect(readdirSync(set.dir!)).toEqual(['not-a-fifo']);
  });

  it('leaves log URIs and missing paths alone', async () => {
    await expect(
      removeFifoSet(fifoSetOf({ stdout: 'binary:///bin/logger', stderr: join(root, 'gone') })),
    ).resolves.toBeUndefined();
  });
});

describe('copyIo', () => {
  it('copies output written before and after the shim opened its end, and resolves wait at EOF', async () => {
    const set = await newFifoSet(root, 'out');
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const out = collect(stdout);
    const err = collect(stderr);
    const io = copyIo(set, { stdout, stderr });
    // Nothing has opened the write ends yet: no EOF must be seen.
    await new Promise((r) => setTimeout(r, 50));
    const w1 = openSync(set.stdout, constants.O_WRONLY);
    const w2 = openSync(set.stderr, constants.O_WRONLY);
    writeSync(w1, 'hello ');
    writeSync(w2, 'oops\n');
    writeSync(w1, 'world\n');
    closeSync(w1);
    closeSync(w2);
    await io.wait();
    expect(out()).toBe('hello world\n');
    expect(err()).toBe('oops\n');
    expect(stdout.writableEnded).toBe(false);
    await io.close();
    expect(existsSync(set.dir!)).toBe(false);
  });

  it('keeps stdin that ended before the shim opened the FIFO until closeStdin, then EOF', async () => {
    const set = await newFifoSet(root, 'in');
    let ended = 0;
    const io = copyIo(
      set,
      { stdin: Readable.from([Buffer.from('line 1\n'), Buffer.from('line 2\n')]) },
      {
        onStdinEnd: () => ended++,
      },
    );
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (ended > 0) {
          clearInterval(t);
          resolve();
        }
      }, 5);
    });
    // The "shim" opens its reader only now; the input is still there because we hold the FIFO.
    const read = drain(set.stdin);
    await new Promise((r) => setTimeout(r, 20));
    await io.closeStdin();
    expect(await read).toBe('line 1\nline 2\n');
    expect(ended).toBe(1);
    await io.close();
  });

  it('stops copying on cancel, leaving the caller stdin paused and the FIFOs in place', async () => {
    const set = await newFifoSet(root, 'cancel');
    const stdin = new PassThrough();
    const io = copyIo(set, { stdin, stdout: new PassThrough() }, { onStdinEnd: () => {} });
    io.cancel();
    expect(stdin.isPaused()).toBe(true);
    await io.wait();
    expect(readdirSync(set.dir!).sort()).toEqual(['cancel-stderr', 'cancel-stdin', 'cancel-stdout']);
    await removeFifoSet(set);
  });

  it('fails to open FIFOs that do not exist, naming them', () => {
    expect(() => copyIo(fifoSetOf({ stdout: join(root, 'nope') }), { stdout: new PassThrough() })).toThrow(
      /ENOENT.*nope/,
    );
  });
});

describe('holdFifos', () => {
  it('keeps what is written into a held FIFO until it is released', async () => {
    const set = await newFifoSet(root, 'held');
    const release = holdFifos(set);
    // A shim opening its writer without blocking finds a reader (ours: ENXIO without one),
    // and what it writes while nobody reads stays in the FIFO.
    const w = openSync(set.stdout, constants.O_WRONLY | constants.O_NONBLOCK);
    writeSync(w, 'kept\n');
    const reader = openSync(set.stdout, constants.O_RDONLY | constants.O_NONBLOCK);
    closeSync(w);
    release();
    const buf = Buffer.alloc(64);
    expect(buf.subarray(0, readSync(reader, buf)).toString()).toBe('kept\n');
    closeSync(reader);
    await removeFifoSet(set);
  });

  it('opens nothing when a FIFO is missing', () => {
    mkdirSync(join(root, 'd'));
    expect(() => holdFifos(fifoSetOf({ stdin: join(root, 'd', 'x-stdin') }))).toThrow(/ENOENT/);
  });
});
