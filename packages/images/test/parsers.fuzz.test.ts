/**
 * Property-based tests (fast-check) of what images parses from the outside: references
 * typed by users and tar streams from registries. Any input gives a value or an
 * InvalidArgumentError, never another exception or a hang; what berth writes, it reads
 * back unchanged. Bounded in count and time so they run in every CI.
 */
import { InvalidArgumentError } from '@berth/api';
import fc from 'fast-check';
import { buildTar, formatReference, parseReference, readTar, type TarInput } from '../src';

const RUNS = { numRuns: 500, interruptAfterTimeLimit: 10_000 };

describe('references', () => {
  const refish = fc.string({
    unit: fc.constantFrom(...'abz09._-/:@ABZ'.split('')),
    maxLength: 60,
  });

  test('any input parses to a reference that formats and parses to itself, or is InvalidArgument', () => {
    fc.assert(
      fc.property(fc.oneof(refish, fc.string({ maxLength: 300 })), (s) => {
        let ref: ReturnType<typeof parseReference>;
        try {
          ref = parseReference(s);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidArgumentError);
          return;
        }
        expect(parseReference(formatReference(ref))).toEqual(ref);
      }),
      { ...RUNS, numRuns: 3000 },
    );
  });

  test('long runs of name characters do not make the grammar backtrack', () => {
    for (const s of [
      'a'.repeat(4000),
      `${'a-'.repeat(1500)}!`,
      `${'a.'.repeat(1500)}:`,
      `x/${'a__'.repeat(1000)}@`,
    ]) {
      expect(() => parseReference(s)).toThrow(InvalidArgumentError);
    }
  });
});

async function* chunksOf(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

interface ReadEntry {
  name: string;
  type: string;
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  linkname: string;
  xattrs: Record<string, string>;
  data: string;
}

async function readAll(data: Buffer, chunk: number): Promise<ReadEntry[]> {
  const out: ReadEntry[] = [];
  for await (const e of readTar(chunksOf(data, chunk))) {
    const h = e.header;
    out.push({
      name: h.name,
      type: h.type,
      mode: h.mode,
      uid: h.uid,
      gid: h.gid,
      mtime: h.mtime,
      linkname: h.linkname,
      xattrs: Object.fromEntries([...h.xattrs].map(([k, v]) => [k, v.toString('hex')])),
      data: (await e.readAll()).toString('hex'),
    });
  }
  return out;
}

const segment = fc.string({
  unit: fc.constantFrom(...'abcxyz019._-é漢'.split('')),
  minLength: 1,
  maxLength: 40,
});
const entry: fc.Arbitrary<TarInput> = fc.record({
  name: fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => parts.join('/')),
  type: fc.constantFrom('file' as const, 'dir' as const, 'symlink' as const),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  uid: fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0o7777777, max: 2 ** 32 - 1 })),
  gid: fc.integer({ min: 0, max: 2 ** 31 }),
  mtime: fc.integer({ min: 0, max: 2 ** 34 }),
  linkname: segment,
  xattrs: fc.dictionary(
    fc.constantFrom('user.a', 'user.b', 'security.capability'),
    fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
  ),
  data: fc.uint8Array({ maxLength: 1500 }).map((a) => Buffer.from(a)),
});

describe('tar reader', () => {
  test('reads back every field of what buildTar wrote, whatever the chunking', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(entry, { maxLength: 6 }),
        fc.integer({ min: 1, max: 2048 }),
        async (entries, chunk) => {
          const got = await readAll(buildTar(entries), chunk);
          expect(got).toEqual(
            entries.map((e) => ({
              name: e.type === 'dir' ? `${e.name}/` : e.name,
              type: e.type,
              mode: e.mode,
              uid: e.uid,
              gid: e.gid,
              mtime: e.mtime,
              linkname: e.linkname ?? '',
              xattrs: Object.fromEntries(
                Object.entries(e.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v).toString('hex')]),
              ),
              data: e.type === 'file' ? Buffer.from(e.data ?? '').toString('hex') : '',
            })),
          );
        },
      ),
      RUNS,
    );
  });

  test('a corrupted or truncated archive is read or refused with InvalidArgument, never anything else', async () => {
    const mutation = fc.record({
      entries: fc.array(entry, { minLength: 1, maxLength: 4 }),
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
      cut: fc.option(fc.nat()),
    });
    await fc.assert(
      fc.asyncProperty(mutation, async ({ entries, flips, cut }) => {
        const data = Buffer.from(buildTar(entries));
        for (const [at, byte] of flips) data[at % data.length] = byte;
        const input = cut === null ? data : data.subarray(0, cut % data.length);
        try {
          await readAll(input, 512);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidArgumentError);
        }
      }),
      { ...RUNS, numRuns: 2000 },
    );
  });
});
