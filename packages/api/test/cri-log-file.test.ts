import { mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CriLogFile, parseCriLogLine } from '../src';

describe('CriLogFile', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-api-crilog-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const lines = (file: string) =>
    readFileSync(file)
      .toString()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => {
        const e = parseCriLogLine(Buffer.from(l));
        if (!e) throw new Error(`not a CRI log line: ${l}`);
        return `${e.stream} ${e.partial ? 'P' : 'F'} ${e.text.toString()}`;
      });

  const finish = (w: NodeJS.WritableStream) => new Promise<void>((r) => w.end(r));

  it('writes both streams as CRI lines split at the size, in a directory it makes', async () => {
    const file = join(dir, 'pod', 'c', '0.log');
    const w = new CriLogFile({ path: file, maxLineSize: 4 });
    const out = w.stream('stdout');
    const err = w.stream('stderr');
    out.write(Buffer.from('ab\ncdefghij'));
    err.write(Buffer.from('oops\n'));
    out.write(Buffer.from('k\nunterminated'));
    await finish(out);
    await finish(err);
    w.close();
    expect(lines(file)).toEqual([
      'stdout F ab',
      'stdout P cdef',
      // ghij may still end the line, until the next byte says otherwise.
      'stderr F oops',
      'stdout P ghij',
      'stdout F k',
      'stdout P unte',
      'stdout P rmin',
      'stdout F ated',
    ]);
  });

  it('reopen: lines after it go to a new file at the path, earlier ones stay in the renamed one', async () => {
    const file = join(dir, '0.log');
    const w = new CriLogFile({ path: file, maxLineSize: 0 });
    const out = w.stream('stdout');
    out.write(Buffer.from('before\n'));
    renameSync(file, `${file}.1`);
    out.write(Buffer.from('still old\n'));
    w.reopen();
    out.write(Buffer.from('after\n'));
    await finish(out);
    w.close();
    expect(lines(`${file}.1`)).toEqual(['stdout F before', 'stdout F still old']);
    expect(lines(file)).toEqual(['stdout F after']);
  });
});
