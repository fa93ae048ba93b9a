import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { criLogLine, type LogStream } from '@berth/api';
import { LogFollower } from '../src/container/log-follow';

const at = new Date('2026-01-02T03:04:05Z');
const line = (stream: LogStream, partial: boolean, text: string) =>
  criLogLine(at, stream, partial, Buffer.from(text));

async function until(what: string, fn: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('LogFollower (Attach of a container whose shim writes the log)', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'berth-cri-follow-'));
    path = join(dir, '0.log');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('passes on what is written from now on, P pieces as they are and F lines with a newline', async () => {
    writeFileSync(path, line('stdout', false, 'before attach'));
    const f = new LogFollower(path);
    const got: string[] = [];
    let ended = false;
    f.subscribe(
      (s, d) => got.push(`${s}:${d.toString()}`),
      () => {
        ended = true;
      },
    );
    appendFileSync(path, Buffer.concat([line('stdout', true, 'ab'), line('stdout', false, 'cd')]));
    // A line the shim has not finished writing yet waits for its newline.
    const errLine = line('stderr', false, 'oops');
    appendFileSync(path, errLine.subarray(0, 10));
    await until('the first lines', () => got.length >= 2);
    appendFileSync(path, errLine.subarray(10));
    await f.end();
    expect(got).toEqual(['stdout:ab', 'stdout:cd\n', 'stderr:oops\n']);
    expect(ended).toBe(true);
    // Later subscribers end at once.
    await new Promise<void>((r) => f.subscribe(() => {}, r));
  });

  it('follows a rotation: the renamed file to its end, then the new file from its start', async () => {
    writeFileSync(path, '');
    const f = new LogFollower(path);
    const got: string[] = [];
    f.subscribe(
      (_s, d) => got.push(d.toString()),
      () => {},
    );
    appendFileSync(path, line('stdout', false, '1'));
    await until('line 1', () => got.length === 1);
    renameSync(path, `${path}.1`);
    appendFileSync(`${path}.1`, line('stdout', false, '2'));
    writeFileSync(path, line('stdout', false, '3'));
    await until('line 3', () => got.length === 3);
    await f.end();
    expect(got).toEqual(['1\n', '2\n', '3\n']);
  });

  it('reads nothing while nobody is attached, and stops when the last one leaves', async () => {
    writeFileSync(path, '');
    const f = new LogFollower(path);
    const got: string[] = [];
    const off = f.subscribe(
      (_s, d) => got.push(d.toString()),
      () => {},
    );
    appendFileSync(path, line('stdout', false, 'seen'));
    await until('the line', () => got.length === 1);
    off();
    appendFileSync(path, line('stdout', false, 'unseen'));
    await new Promise((r) => setTimeout(r, 150));
    await f.end();
    expect(got).toEqual(['seen\n']);
  });
});
