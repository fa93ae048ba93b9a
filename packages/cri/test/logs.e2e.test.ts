/**
 * Container logs end to end: under berth's shim (the default handler) the shim writes the CRI
 * log, so a container printing every 10 ms loses no line across a berthd SIGKILL and restart;
 * ReopenContainerLog under both handlers (berth's shim, and containerd's runc shim whose FIFOs
 * berthd copies); and the real crictl's `logs` and `logs -f`, long lines split at
 * max_container_log_line_size.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { grpcService, parseCriLogLine } from '@berth/api';
import { CRICTL, useCriDaemon } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';

const MAX_LINE = 64;

const cri = useCriDaemon({
  name: 'logs',
  criConfig: { max_container_log_line_size: MAX_LINE },
  images: { 'logs/app:v1': { layers: ['busybox'], config: {} } },
  pull: ['logs/app:v1'],
});
const image = () => cri.image('logs/app:v1');

const crictl = (...args: string[]) => cri.crictl(...args);
const ok = (...args: string[]) => cri.ok(...args);

let seq = 0;
const writeJson = async (name: string, v: unknown): Promise<string> => cri.writeJson(name, v);

/** A host-network pod (no CNI), under `handler` ('' for berthd's default, berth's shim). */
async function pod(handler = ''): Promise<{ id: string; path: string; logDir: string }> {
  const n = ++seq;
  const logDir = cri.logDir(`pod${n}`);
  const path = await writeJson('pod', {
    metadata: { name: `pod${n}`, namespace: 'logs', uid: `uid-${n}`, attempt: 0 },
    log_directory: logDir,
    linux: { security_context: { namespace_options: { network: 2 } } },
  });
  const args = handler ? ['runp', '--runtime', handler, path] : ['runp', path];
  return { id: await ok(...args), path, logDir };
}

/** Creates and starts a container running `script` with sh -c; its log is <logDir>/<name>.log. */
async function container(p: { id: string; path: string; logDir: string }, name: string, script: string) {
  const cfg = await writeJson(name, {
    metadata: { name, attempt: 0 },
    image: { image: image() },
    command: ['/bin/sh', '-c', script],
    log_path: `${name}.log`,
  });
  const id = await ok('create', p.id, cfg, p.path);
  await ok('start', id);
  return { id, log: join(p.logDir, `${name}.log`) };
}

interface Line {
  time: bigint;
  stream: string;
  partial: boolean;
  text: string;
}

async function readLog(path: string): Promise<Line[]> {
  const text = await readFile(path);
  const out: Line[] = [];
  let start = 0;
  for (let nl = text.indexOf(0x0a); nl >= 0; nl = text.indexOf(0x0a, start)) {
    const e = parseCriLogLine(text.subarray(start, nl + 1));
    if (!e) throw new Error(`${path}: not a CRI log line: ${text.subarray(start, nl + 1).toString()}`);
    out.push({ time: e.time.toNanos(), stream: e.stream, partial: e.partial, text: e.text.toString() });
    start = nl + 1;
  }
  expect(start).toBe(text.length);
  return out;
}

/** The numbers a counting container printed, in file order. */
const numbers = (lines: Line[]) => lines.filter((l) => /^\d+$/.test(l.text)).map((l) => Number(l.text));

/** Asserts 1..n, each once, in order. */
function expectConsecutive(nums: number[]): void {
  const firstBad = nums.findIndex((v, i) => v !== i + 1);
  if (firstBad >= 0)
    throw new Error(
      `line ${firstBad}: ${nums.slice(Math.max(0, firstBad - 3), firstBad + 3).join(',')} (of ${nums.length})`,
    );
  expect(nums.length).toBeGreaterThan(0);
}

const COUNTER = 'i=0; while true; do i=$((i+1)); echo $i; usleep 10000; done';

const until = (what: string, fn: () => Promise<boolean>) => cri.until(what, fn);

const countOf = async (log: string) => numbers(await readLog(log).catch(() => [])).length;

/** ReopenContainerLog over gRPC (crictl has no command for it). */
async function reopen(containerId: string): Promise<grpc.ServiceError | undefined> {
  const Client = grpc.makeGenericClientConstructor(
    grpcService('runtime.v1.RuntimeService'),
    'RuntimeService',
  );
  const client = new Client(`unix://${cri.berthd.address}`, grpc.credentials.createInsecure()) as unknown as {
    ReopenContainerLog(req: unknown, cb: (e: grpc.ServiceError | null) => void): void;
    close(): void;
  };
  try {
    return await new Promise((resolve) =>
      client.ReopenContainerLog({ containerId }, (e) => resolve(e ?? undefined)),
    );
  } finally {
    client.close();
  }
}

describe('container logs written by the shim', () => {
  test('a line every 10 ms: none lost or doubled across a berthd SIGKILL and restart', async () => {
    const p = await pod();
    const c = await container(p, 'counter', COUNTER);
    await until('the first lines', async () => (await countOf(c.log)) >= 50);
    const wallAtKill = BigInt(Date.now()) * 1_000_000n;
    await cri.berthd.stop('SIGKILL');
    // While berthd is down the container goes on printing into the shim's log.
    const atKill = await countOf(c.log);
    await until('lines written while berthd is down', async () => (await countOf(c.log)) >= atKill + 50);
    const wallAtRestart = BigInt(Date.now()) * 1_000_000n;
    await cri.restart();
    const afterRestart = await countOf(c.log);
    await until('lines after the restart', async () => (await countOf(c.log)) >= afterRestart + 50);
    await ok('stop', '--timeout', '0', c.id);
    const lines = await readLog(c.log);
    expectConsecutive(numbers(lines));
    expect(lines.every((l) => l.stream === 'stdout' && !l.partial)).toBe(true);
    const whileDown = lines.filter((l) => l.time > wallAtKill && l.time < wallAtRestart).length;
    expect(whileDown).toBeGreaterThanOrEqual(50);
    // After stop the log is complete: nothing more arrives.
    const final = (await readFile(c.log)).length;
    await new Promise((r) => setTimeout(r, 300));
    expect((await readFile(c.log)).length).toBe(final);
    await ok('rm', c.id);
    await ok('rmp', '-f', p.id);
  }, 180_000);

  test.each([
    ['berth', ''],
    ['runc', 'runc'],
  ])(
    'ReopenContainerLog under the %s handler: lines after it land in the new file',
    async (_n, handler) => {
      const p = await pod(handler);
      const c = await container(p, `rot-${handler || 'berth'}`, COUNTER);
      await until('the first lines', async () => (await countOf(c.log)) >= 20);
      await rename(c.log, `${c.log}.1`);
      expect(await reopen(c.id)).toBeUndefined();
      await until('lines in the new file', async () => (await countOf(c.log)) >= 20);
      await ok('stop', '--timeout', '0', c.id);
      const old = numbers(await readLog(`${c.log}.1`));
      const now = numbers(await readLog(c.log));
      expect(old.length).toBeGreaterThanOrEqual(20);
      expect(now[0]).toBe(old[old.length - 1]! + 1);
      expectConsecutive([...old, ...now]);
      // A container that is not running cannot reopen its log; an unknown one is NotFound.
      const stopped = await reopen(c.id);
      expect(stopped?.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(stopped?.details).toContain(c.id);
      const unknown = await reopen('0'.repeat(64));
      expect(unknown?.code).toBe(grpc.status.NOT_FOUND);
      expect(unknown?.details).toContain('0'.repeat(64));
      await ok('rm', c.id);
      await ok('rmp', '-f', p.id);
    },
    120_000,
  );

  test('crictl logs and logs -f read the log, long lines split at the maximum size and joined back', async () => {
    const p = await pod();
    const long = 'x'.repeat(MAX_LINE * 2 + 10);
    const script =
      `echo first; printf '${long}\\n'; echo to-stderr >&2; ` +
      'while [ ! -f /tmp/go ]; do usleep 10000; done; echo late; printf no-newline';
    const c = await container(p, 'talker', script);
    await until('the output before the wait', async () => (await readLog(c.log).catch(() => [])).length >= 5);
    const lines = await readLog(c.log);
    expect(lines.map((l) => `${l.stream} ${l.partial ? 'P' : 'F'} ${l.text.length}`)).toEqual([
      'stdout F 5',
      `stdout P ${MAX_LINE}`,
      `stdout P ${MAX_LINE}`,
      'stdout F 10',
      'stderr F 9',
    ]);
    const logs = await crictl('logs', c.id);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toBe(`first\n${long}\n`);
    expect(logs.stderr).toBe('to-stderr\n');
    // -f: what is there, then what comes, until the container exits.
    const follow: ChildProcess = spawn(CRICTL, [...cri.endpoint, 'logs', '-f', c.id]);
    let out = '';
    follow.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const exited = new Promise<number | null>((r) => follow.once('exit', r));
    try {
      await until('crictl logs -f printing the earlier lines', async () => out.includes(long));
      await ok('exec', '-s', c.id, 'touch', '/tmp/go');
      const code = await Promise.race([
        exited,
        new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 30_000)),
      ]);
      expect(code).toBe(0);
      // The last output had no newline: the shim wrote it as a full line when the stream ended.
      expect(out).toBe(`first\n${long}\nlate\nno-newline\n`);
    } finally {
      follow.kill();
    }
    await ok('rm', '-f', c.id);
    await ok('rmp', '-f', p.id);
  }, 120_000);
});
