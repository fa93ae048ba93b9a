// `pnpm torture`: what berthd and (when installed) Debian's containerd do when things go
// wrong, side by side, each on temporary roots, driven by the same stock ctr:
//   a  SIGKILL during a pull at 6 moments, restart, pull again
//   b  SIGKILL with 10 containers running and 5 `ctr run -d` in flight, restart, delete all
//   c  many `ctr run --rm` at once and in a row
//   d  clients sending garbage HTTP/2 frames
//   e  malformed gRPC bodies (truncated field, 2 GiB length prefix, compressed flag alone)
//   f  the disk filling up during a pull (a small tmpfs under the daemon's root)
// It reports what happens; it asserts nothing (the jest e2e tests do).
// Usage: pnpm torture [--quick] [--only a,b,...] [--daemons berthd,containerd]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import http2 from 'node:http2';
import { connect } from 'node:net';
import { join } from 'node:path';
import { median, testkit } from './_common.mjs';

if (!existsSync(new URL('../packages/daemon/dist/main.js', import.meta.url))) {
  console.error('berth is not built: run `pnpm build` first');
  process.exit(1);
}
if (process.getuid?.() !== 0) {
  console.error('pnpm torture runs containers and mounts a tmpfs: run it as root');
  process.exit(1);
}

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = argv.includes('--quick');
const ONLY = (opt('only') ?? 'a,b,c,d,e,f').split(',');
const WANTED = (opt('daemons') ?? 'berthd,containerd').split(',');
const N = QUICK
  ? { moments: 6, running: 4, inFlight: 2, parallel: 10, serial: 5, garbage: 10 }
  : { moments: 6, running: 10, inFlight: 5, parallel: 50, serial: 20, garbage: 50 };

const MiB = 1024 * 1024;
const RUNC = 'io.containerd.runc.v2';
const IMAGE = 'docker.io/library/busybox:berth-torture';
const NS = `torture-${process.pid}`;
const {
  buildImage,
  checkContent,
  ctr,
  diskBlobs,
  diskIngests,
  file,
  listTasks,
  makeTempDir,
  pushToRegistry,
  removeDir,
  startBerthd,
  startContainerd,
  startFaultyProxy,
  startRegistry,
  waitUntil,
  writeOciLayout,
} = testkit;

const daemonKinds = { berthd: startBerthd, containerd: startContainerd };
const kinds = WANTED.filter((k) => k in daemonKinds && (k !== 'containerd' || testkit.containerdInstalled()));

/** rows[scenario][metric][daemon] = value */
const rows = [];
const record = (scenario, metric, kind, value) => {
  let row = rows.find((r) => r.scenario === scenario && r.metric === metric);
  if (!row) rows.push((row = { scenario, metric, values: {} }));
  row.values[kind] = value;
};

const work = makeTempDir('berth-torture-');
const on = (d, args, opts) => ctr(d.address, ['-n', NS, ...args], { timeoutMs: 60_000, ...opts });
const ok = async (d, args) => {
  const r = await on(d, args);
  if (r.code !== 0) throw new Error(`ctr ${args.join(' ')}: exit ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
};
const bgCtr = (d, args) => {
  const child = spawn('/usr/bin/ctr', ['--address', d.address, '-n', NS, ...args], { stdio: 'ignore' });
  child.done = new Promise((r) => child.once('exit', (code) => r(code ?? -1)));
  return child;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts a daemon of a kind in `dir`, or reports why not. */
async function start(kind, dir) {
  try {
    return { daemon: await daemonKinds[kind]({ dir }) };
  } catch (err) {
    return { error: err.message.split('\n')[0] };
  }
}

/** Stops a daemon and everything of ours it ran, and removes its directory. */
async function teardown(d, dir) {
  if (d) {
    await removeEverything(d).catch(() => {});
    await d.stop('SIGKILL');
  }
  await killShims();
  for (const m of mountsUnder(dir).reverse()) await run('umount', ['-l', m]);
  removeDir(dir);
}

const run = (cmd, args) =>
  new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: 'ignore' });
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(-1));
  });

// ---------------------------------------------------------------- what a run leaves behind

/** Shim processes serving our namespace (their argv carries `-namespace <ns>`). */
function shimPids() {
  const pids = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const a = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      const i = a.indexOf('-namespace');
      if (i >= 0 && a[i + 1] === NS && a.slice(0, 2).some((x) => /containerd-shim-/.test(x))) pids.push(Number(e));
    } catch {}
  }
  return pids;
}
const runcRoots = () => [`/run/containerd/runc/${NS}`, `/run/berth/runc/${NS}`];
const runcStates = () => runcRoots().flatMap((r) => (existsSync(r) ? readdirSync(r) : []));
function mountsUnder(dir) {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m) => m && (m === dir || m.startsWith(`${dir}/`)));
}
const bundles = (d) => {
  const p = join(d.state, 'io.containerd.runtime.v2.task', NS);
  return existsSync(p) ? readdirSync(p) : [];
};
async function killShims() {
  for (const pid of shimPids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  for (const root of runcRoots()) {
    for (const id of existsSync(root) ? readdirSync(root) : []) await run('runc', ['--root', root, 'delete', '-f', id]);
    rmSync(root, { recursive: true, force: true });
  }
}

/** Deletes every task and container of our namespace, as a user would. */
async function removeEverything(d) {
  const tasks = await listTasks(d.address, NS).catch(() => new Map());
  await Promise.all([...tasks.keys()].map((id) => on(d, ['tasks', 'kill', '-s', 'SIGKILL', id])));
  await Promise.all(
    [...tasks.keys()].map(async (id) => {
      for (let i = 0; i < 50; i++) {
        const r = await on(d, ['tasks', 'rm', '-f', id]);
        if (r.code === 0 || /not found/.test(r.stderr)) return;
        await sleep(100);
      }
    }),
  );
  const ids = (await on(d, ['containers', 'ls', '-q'])).stdout.split('\n').filter(Boolean);
  await Promise.all(ids.map((id) => on(d, ['containers', 'rm', id])));
}

// ---------------------------------------------------------------- images and registry

console.error('building images...');
const base = buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } });
const archive = join(work, 'busybox.tar');
writeOciLayout(archive, base, IMAGE);
const pullImage = buildImage({
  layers: ['busybox', [file('t/a', randomBytes(6 * MiB))], [file('t/b', Buffer.alloc(48 * MiB, 'b'))]],
  config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] },
});
const bigImage = buildImage({
  layers: ['busybox', [file('t/big', randomBytes(40 * MiB))]],
  config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] },
});
const registry = await startRegistry();
const proxy = await startFaultyProxy(registry);
await pushToRegistry(registry.url, 'torture/pull', 'v1', pullImage);
await pushToRegistry(registry.url, 'torture/big', 'v1', bigImage);
const pullRef = `${proxy.host}/torture/pull:v1`;
const bigRef = `${proxy.host}/torture/big:v1`;
const [, layerA, layerB] = pullImage.layers.map((l) => l.desc.digest);

// ---------------------------------------------------------------- a: SIGKILL during a pull

/** The six moments, each a way to wait for it to be reached (with the pull running). */
const moments = [
  { name: 'manifest fetched, config stalled', stall: [`/blobs/${pullImage.config.digest}`, 0] },
  { name: 'layer 1 MiB in', stall: [layerA, 1 * MiB] },
  { name: 'layer 3 MiB in, the other committed', stall: [layerA, 3 * MiB], committed: layerB },
  { name: 'layer 5 MiB of 6 in', stall: [layerA, 5 * MiB] },
  { name: 'unpacking the top layer', extracting: 't/b' },
  { name: 'just after the pull returned', after: true },
];

const ingestAt = (d, digest, offset) => () =>
  diskIngests(d.root).some((i) => i.ref.includes(digest.replace('sha256:', '')) && i.offset >= offset);
const extracting = (d, rel) => () => {
  const s = join(d.root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots');
  return (existsSync(s) ? readdirSync(s) : []).some((n) => existsSync(join(s, n, 'fs', rel)));
};

async function scenarioA(kind) {
  const S = 'a. SIGKILL during a pull (6 moments)';
  const tally = { restart: 0, bad: 0, unreadable: 0, pull: 0, check: 0, run: 0, reached: 0 };
  for (const [i, m] of moments.slice(0, N.moments).entries()) {
    const dir = makeTempDir(`torture-a-${kind}-`);
    let { daemon: d } = await start(kind, dir);
    try {
      let pull;
      if (m.stall) proxy.addFault({ method: 'GET', path: m.stall[0], fault: { kind: 'stall', bytes: m.stall[1] }, times: 1 });
      if (m.after) await ok(d, ['images', 'pull', '--plain-http', pullRef]);
      else pull = bgCtr(d, ['images', 'pull', '--plain-http', pullRef]);
      const reached = m.after
        ? () => true
        : m.extracting
          ? extracting(d, m.extracting)
          : m.stall[1] === 0
            ? () => proxy.requests.some((r) => r.path.includes(m.stall[0]))
            : async () =>
                ingestAt(d, m.stall[0], m.stall[1])() &&
                (!m.committed || diskBlobs(d.root).includes(m.committed));
      const got = await waitUntil(m.name, reached, 30_000).then(
        () => true,
        () => false,
      );
      if (got) tally.reached++;
      await d.stop('SIGKILL');
      pull?.kill('SIGKILL');
      proxy.clearFaults();
      const again = await start(kind, dir);
      if (!again.daemon) {
        console.error(`${kind} a/${i}: first restart failed: ${again.error}`);
        d = (await start(kind, dir)).daemon;
        if (!d) continue;
      } else {
        tally.restart++;
        d = again.daemon;
      }
      const check = await checkContent(d.address, NS).catch((e) => ({ bad: [], unreadable: [e.message] }));
      tally.bad += check.bad.length;
      tally.unreadable += check.unreadable.length;
      if ((await on(d, ['images', 'pull', '--plain-http', pullRef])).code === 0) tally.pull++;
      if ((await on(d, ['images', 'check', `name==${pullRef}`])).stdout.includes('complete (4/4)')) tally.check++;
      const r = await on(d, ['run', '--rm', pullRef, `a${i}`, '/bin/sh', '-c', 'wc -c < /t/b']);
      if (r.code === 0 && r.stdout.trim() === String(48 * MiB)) tally.run++;
    } finally {
      proxy.clearFaults();
      await teardown(d, dir);
    }
  }
  const n = N.moments;
  record(S, 'moments reached before the kill', kind, `${tally.reached}/${n}`);
  record(S, 'first restart succeeded', kind, `${tally.restart}/${n}`);
  record(S, 'blobs not matching their digest / unreadable', kind, `${tally.bad} / ${tally.unreadable}`);
  record(S, 'pull again / check complete / run', kind, `${tally.pull}/${n} / ${tally.check}/${n} / ${tally.run}/${n}`);
}

// ---------------------------------------------------------------- b: SIGKILL with containers running

async function scenarioB(kind) {
  const S = `b. SIGKILL, ${N.running} running + ${N.inFlight} run -d in flight`;
  const dir = makeTempDir(`torture-b-${kind}-`);
  let { daemon: d } = await start(kind, dir);
  try {
    await ok(d, ['images', 'import', archive]);
    const keep = Array.from({ length: N.running }, (_, i) => `keep-${i}`);
    for (let i = 0; i < keep.length; i += 5)
      await Promise.all(keep.slice(i, i + 5).map((id) => ok(d, ['run', '-d', '--runtime', RUNC, IMAGE, id, 'sleep', '1000'])));
    const flight = Array.from({ length: N.inFlight }, (_, i) => `flight-${i}`);
    const clients = flight.map((id) => bgCtr(d, ['run', '-d', '--runtime', RUNC, IMAGE, id, 'sleep', '1000']));
    await waitUntil('a bundle of the runs in flight', () => bundles(d).some((b) => flight.includes(b)), 20_000).catch(() => {});
    await d.stop('SIGKILL');
    for (const c of clients) c.kill('SIGKILL');
    const again = await start(kind, dir);
    record(S, 'first restart succeeded', kind, again.daemon ? 'yes' : `no: ${again.error}`);
    d = again.daemon ?? (await start(kind, dir)).daemon;
    if (!d) return;
    const tasks = await listTasks(d.address, NS);
    record(S, 'containers still RUNNING', kind, `${keep.filter((id) => tasks.get(id) === 'RUNNING').length}/${keep.length}`);
    record(S, 'in-flight runs RUNNING', kind, `${flight.filter((id) => tasks.get(id) === 'RUNNING').length}/${flight.length}`);
    await removeEverything(d);
    // Leftovers are what is still there once the daemon had time to reap (shims may idle a while).
    await waitUntil('shims to exit', () => shimPids().length === 0, 15_000).catch(() => {});
    const snaps = (await on(d, ['snapshots', 'ls'])).stdout.split('\n').filter((l) => /\bActive\b/.test(l));
    record(
      S,
      'left after deleting all: shims/bundles/runc/snapshots',
      kind,
      `${shimPids().length}/${bundles(d).length}/${runcStates().length}/${snaps.length}`,
    );
  } finally {
    await teardown(d, dir);
  }
}

// ---------------------------------------------------------------- c: many runs

/** The resident set of a process in MiB. */
const rssOf = (pid) => {
  try {
    return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;
  } catch {
    return 0;
  }
};

async function scenarioC(kind) {
  const S = `c. ${N.parallel} run --rm at once, ${N.serial} in a row`;
  const dir = makeTempDir(`torture-c-${kind}-`);
  const { daemon: d } = await start(kind, dir);
  try {
    await ok(d, ['images', 'import', archive]);
    const idle = rssOf(d.pid);
    let peak = idle;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssOf(d.pid));
    }, 100);
    const par = await Promise.all(
      Array.from({ length: N.parallel }, (_, i) => on(d, ['run', '--rm', '--runtime', RUNC, IMAGE, `p${i}`, '/bin/true'])),
    );
    let serialFailures = 0;
    for (let i = 0; i < N.serial; i++)
      if ((await on(d, ['run', '--rm', '--runtime', RUNC, IMAGE, `s${i}`, '/bin/true'])).code !== 0) serialFailures++;
    clearInterval(sampler);
    const failed = par.filter((r) => r.code !== 0);
    if (failed.length) console.error(`${kind} c: ${failed[0].stderr.trim()}`);
    record(S, 'failures at once / in a row', kind, `${failed.length}/${N.parallel} / ${serialFailures}/${N.serial}`);
    record(S, 'daemon RSS idle / peak / after (MiB)', kind, `${idle.toFixed(0)} / ${peak.toFixed(0)} / ${rssOf(d.pid).toFixed(0)}`);
  } finally {
    await teardown(d, dir);
  }
}

// ---------------------------------------------------------------- d: garbage HTTP/2

const fdCount = (pid) => readdirSync(`/proc/${pid}/fd`).length;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** A frame header: 24-bit length, type, flags, stream id. */
const frame = (type, flags, stream, payload) => {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream, 5);
  return Buffer.concat([h, payload]);
};
/** Ways to be rude: no preface, a bad frame after a good preface, a HEADERS block that is noise. */
const garbage = [
  { name: 'no preface', bytes: () => randomBytes(4096) },
  { name: 'noise after SETTINGS', bytes: () => Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0)), randomBytes(4096)]) },
  {
    name: 'HEADERS of noise',
    bytes: () => Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 4, 1, randomBytes(200))]),
  },
  { name: 'DATA on stream 0', bytes: () => Buffer.concat([PREFACE, frame(0, 0, 0, randomBytes(100))]) },
  { name: 'SETTINGS of length 7', bytes: () => Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(7))]) },
];

/** Sends one kind of garbage and times how long until the daemon closes the connection. */
function rude(address, payload, capMs) {
  return new Promise((resolve) => {
    const start = Date.now();
    const s = connect(address);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(undefined);
    }, capMs);
    s.on('connect', () => s.write(payload));
    s.on('data', () => {});
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - start);
    });
  });
}

async function scenarioD(kind) {
  const S = `d. ${N.garbage} clients sending garbage HTTP/2`;
  const dir = makeTempDir(`torture-d-${kind}-`);
  const { daemon: d } = await start(kind, dir);
  const CAP = 10_000;
  try {
    await ok(d, ['version']);
    const before = fdCount(d.pid);
    const times = await Promise.all(
      Array.from({ length: N.garbage }, (_, i) => rude(d.address, garbage[i % garbage.length].bytes(), CAP)),
    );
    const open = garbage
      .filter((_, k) => times.some((t, i) => i % garbage.length === k && t === undefined))
      .map((g) => g.name);
    await sleep(1000);
    const closed = times.filter((t) => t !== undefined);
    record(S, `closed by the daemon within ${CAP / 1000} s`, kind, `${closed.length}/${N.garbage}`);
    record(
      S,
      'time to close, median / max (ms)',
      kind,
      closed.length ? `${median(closed).toFixed(0)} / ${Math.max(...closed).toFixed(0)}` : '-',
    );
    record(S, 'kinds left open', kind, open.join(', ') || 'none');
    record(S, 'fds leaked (after - before)', kind, fdCount(d.pid) - before);
    record(S, 'still serving (ctr version)', kind, (await on(d, ['version'])).code === 0 ? 'yes' : 'no');
  } finally {
    await teardown(d, dir);
  }
}

// ---------------------------------------------------------------- e: malformed gRPC bodies

/** One raw gRPC call over HTTP/2: the status code and message the daemon answers. */
function rawCall(address, path, body, headers = {}) {
  return new Promise((resolve) => {
    const session = http2.connect('http://localhost', { createConnection: () => connect(address) });
    session.on('error', (e) => resolve({ code: 'conn', message: e.message }));
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'containerd-namespace': NS,
      ...headers,
    });
    let status;
    let message = '';
    const take = (h) => {
      if (h['grpc-status'] !== undefined) status = Number(h['grpc-status']);
      if (h['grpc-message'] !== undefined) message = decodeURIComponent(String(h['grpc-message']));
    };
    req.on('response', take);
    req.on('trailers', take);
    req.on('data', () => {});
    const timer = setTimeout(() => req.close(), 5000);
    req.on('close', () => {
      clearTimeout(timer);
      session.close();
      resolve(status === undefined ? { code: 'none', message: `stream closed (rst ${req.rstCode})` } : { code: status, message });
    });
    req.on('error', () => {});
    req.end(body);
  });
}
const CODES = ['OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied', 'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable', 'DataLoss', 'Unauthenticated'];
const grpcFrame = (flag, length, payload) => {
  const h = Buffer.alloc(5);
  h[0] = flag;
  h.writeUInt32BE(length, 1);
  return Buffer.concat([h, payload]);
};

async function scenarioE(kind) {
  const S = 'e. malformed gRPC bodies (Namespaces.Get)';
  const dir = makeTempDir(`torture-e-${kind}-`);
  const { daemon: d } = await start(kind, dir);
  try {
    const path = '/containerd.services.namespaces.v1.Namespaces/Get';
    // field 1 (name), length 5, two bytes present
    const truncated = Buffer.from([0x0a, 0x05, 0x61, 0x62]);
    const cases = [
      ['truncated field', grpcFrame(0, truncated.length, truncated)],
      ['2 GiB length prefix', grpcFrame(0, 0x80000000, Buffer.from([0x0a, 0x01, 0x61]))],
      ['compressed flag, no grpc-encoding', grpcFrame(1, 3, Buffer.from([0x0a, 0x01, 0x61]))],
    ];
    for (const [name, body] of cases) {
      const r = await rawCall(d.address, path, body);
      const code = typeof r.code === 'number' ? CODES[r.code] ?? r.code : r.code;
      record(S, name, kind, `${code}: ${r.message.slice(0, 56)}`);
    }
    record(S, 'still serving (ctr version)', kind, (await on(d, ['version'])).code === 0 ? 'yes' : 'no');
  } finally {
    await teardown(d, dir);
  }
}

// ---------------------------------------------------------------- f: disk full during a pull

async function scenarioF(kind) {
  const S = 'f. disk full during a pull (32 MiB tmpfs root, 40 MiB layer)';
  const dir = makeTempDir(`torture-f-${kind}-`);
  const root = join(dir, 'root');
  mkdirSync(root, { recursive: true });
  if ((await run('mount', ['-t', 'tmpfs', '-o', 'size=32m', 'tmpfs', root])) !== 0) {
    record(S, 'pull fails cleanly', kind, 'skipped: cannot mount tmpfs');
    return removeDir(dir);
  }
  let d;
  try {
    ({ daemon: d } = await start(kind, dir));
    if (!d) return record(S, 'pull fails cleanly', kind, 'daemon did not start on the tmpfs');
    const r = await on(d, ['images', 'pull', '--plain-http', bigRef]);
    const why = (r.stderr.match(/(no space left on device|ENOSPC|resource exhausted|quota)/i) ?? ['other'])[0];
    record(S, 'pull fails, naming the cause', kind, r.code === 0 ? 'pull succeeded?' : `exit ${r.code}, ${why}`);
    const serving = (await on(d, ['version'])).code === 0;
    const exited = d.child.exitCode ?? d.child.signalCode;
    record(S, 'daemon still serving', kind, serving ? 'yes' : exited !== null ? `no: exited (${exited})` : 'no: not answering');
    record(S, 'partial ingests left', kind, diskIngests(d.root).length);
    if (!serving) {
      // What a user does next: free space and start the daemon again.
      await d.stop('SIGKILL');
      await run('mount', ['-o', 'remount,size=256m', root]);
      const again = await start(kind, dir);
      record(S, 'restart once space is back', kind, again.daemon ? 'ok' : `failed: ${again.error.slice(0, 50)}`);
      if (!again.daemon) return;
      d = again.daemon;
    }
    const { bad, unreadable } = await checkContent(d.address, NS).catch((e) => ({ bad: [], unreadable: [e.message] }));
    for (const b of [...bad, ...unreadable]) console.error(`${kind} f: ${b}`);
    record(S, 'blobs not matching their digest / unreadable', kind, `${bad.length} / ${unreadable.length}`);
    await run('mount', ['-o', 'remount,size=256m', root]);
    const again = await on(d, ['images', 'pull', '--plain-http', bigRef]);
    record(S, 'pull once space is back', kind, again.code === 0 ? 'ok' : `exit ${again.code}: ${again.stderr.trim().slice(0, 60)}`);
  } finally {
    await teardown(d, dir);
  }
}

// ---------------------------------------------------------------- run and print

const scenarios = { a: scenarioA, b: scenarioB, c: scenarioC, d: scenarioD, e: scenarioE, f: scenarioF };
try {
  for (const key of ONLY) {
    if (!scenarios[key]) throw new Error(`no scenario ${key} (a-f)`);
    for (const kind of kinds) {
      const t = Date.now();
      console.error(`${key} on ${kind}...`);
      await scenarios[key](kind).catch((err) => record(key, 'scenario failed', kind, err.message.split('\n')[0].slice(0, 80)));
      console.error(`${key} on ${kind}: ${((Date.now() - t) / 1000).toFixed(1)} s`);
    }
  }
} finally {
  await proxy.close();
  await registry.stop();
  removeDir(work);
}

const header = ['scenario', 'metric', ...kinds];
const lines = [header];
let last;
for (const r of rows) {
  lines.push([r.scenario === last ? '' : r.scenario, r.metric, ...kinds.map((k) => String(r.values[k] ?? '-'))]);
  last = r.scenario;
}
const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i].length)));
console.log(`\npnpm torture${QUICK ? ' --quick' : ''} (${new Date().toISOString().slice(0, 10)})`);
for (const l of lines) console.log(l.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd());
