/**
 * Pods outlive berthd: ten pods (a bridge + host-local network of their own, the default
 * handler `berth`, one container each printing a line every 50 ms) keep running while berthd
 * is SIGKILLed; the restarted daemon lists every pod and container as before (crictl pods,
 * ps, inspectp, inspect), execs in each, their logs grow again, and stop and remove leave no
 * shim, netns pin or CNI address behind, while GetContainerEvents subscribers see the stop
 * and removal events. Needs root, runc, /usr/lib/cni and crictl.
 */
import { existsSync, readFileSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { grpcService, protoType, type wire } from '@berth/api';
import { type CriDaemon, startCriDaemon } from '@berth/testkit';
import * as grpc from '@grpc/grpc-js';

const PODS = 10;
// prints a numbered line every 50 ms; exits 143 on SIGTERM
const LOOP = "trap 'exit 143' TERM; i=0; while true; do i=$((i+1)); echo line-$i; sleep 0.05; done";

let cri: CriDaemon;
let subnet: string;
let image: string;

const ok = (...args: string[]) => cri.ok(...args);
const until = (what: string, fn: () => Promise<boolean> | boolean, ms = 20_000, detail?: () => string) =>
  cri.until(what, fn, ms, detail);

const isAlive = (pid: number): boolean => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
};

const shimPids = () => cri.shimPids();
const mountsUnder = () => cri.mounts();
/** Addresses host-local holds for this test's network. */
const allocations = () => cri.net!.leases();

interface Pod {
  n: number;
  id: string;
  config: string;
  container: string;
  logPath: string;
  ip: string;
  pausePid: number;
  pid: number;
}

interface PodInspect {
  status: { id: string; state: string; network: { ip: string } };
  info: { pid: number; runtimeType: string; runtimeHandler: string };
}
interface ContainerInspect {
  status: { id: string; state: string; exitCode: number; logPath: string };
  info: { pid: number; sandboxID: string; runtimeType: string };
}
const inspectp = async (id: string): Promise<PodInspect> => JSON.parse(await ok('inspectp', id));
const inspect = async (id: string): Promise<ContainerInspect> => JSON.parse(await ok('inspect', id));

/** A pod with its container, run with the crictl a kubelet user would use. */
async function startPod(n: number): Promise<Pod> {
  const logDir = cri.logDir(`pod${n}`);
  const podConfig = join(cri.dir, `pod${n}.json`);
  await writeFile(
    podConfig,
    JSON.stringify({
      metadata: { name: `pod${n}`, namespace: 'restart', uid: `uid-${n}`, attempt: 0 },
      hostname: `pod${n}-host`,
      log_directory: logDir,
      labels: { app: 'restart-e2e', n: String(n) },
      linux: {},
    }),
  );
  const ctrConfig = join(cri.dir, `ctr${n}.json`);
  await writeFile(
    ctrConfig,
    JSON.stringify({
      metadata: { name: 'printer', attempt: 0 },
      image: { image },
      command: ['/bin/sh', '-c', LOOP],
      log_path: 'printer.log',
      labels: { n: String(n) },
    }),
  );
  const id = await ok('runp', podConfig);
  const container = await ok('create', id, ctrConfig, podConfig);
  await ok('start', container);
  const [p, c] = await Promise.all([inspectp(id), inspect(container)]);
  return {
    n,
    id,
    config: podConfig,
    container,
    logPath: join(logDir, 'printer.log'),
    ip: p.status.network.ip,
    pausePid: p.info.pid,
    pid: c.info.pid,
  };
}

type EventClient = grpc.Client & {
  GetContainerEvents(
    req: wire.cri.GetEventsRequest,
  ): grpc.ClientReadableStream<wire.cri.ContainerEventResponse>;
};

/** A GetContainerEvents subscriber over grpc-js, as the kubelet's evented PLEG is. */
function subscribe(): {
  events: wire.cri.ContainerEventResponse[];
  ended: Promise<grpc.StatusObject>;
  status?: grpc.StatusObject;
  cancel(): void;
} {
  // int64 nanosecond times do not fit a JS number: decoded as strings here.
  const def = { ...grpcService('runtime.v1.RuntimeService') };
  const type = protoType('runtime.v1.ContainerEventResponse');
  def.GetContainerEvents = {
    ...def.GetContainerEvents!,
    responseDeserialize: (b: Buffer) =>
      type.toObject(type.decode(b), { longs: String, enums: String, defaults: true }),
  };
  const Client = grpc.makeGenericClientConstructor(def, 'RuntimeService');
  const client = new Client(`unix://${cri.berthd.address}`, grpc.credentials.createInsecure()) as EventClient;
  const events: wire.cri.ContainerEventResponse[] = [];
  const stream = client.GetContainerEvents({});
  stream.on('data', (ev: wire.cri.ContainerEventResponse) => events.push(ev));
  const sub = {
    events,
    status: undefined as grpc.StatusObject | undefined,
    ended: new Promise<grpc.StatusObject>((resolve) => {
      stream.on('status', (st: grpc.StatusObject) => {
        sub.status = st;
        resolve(st);
      });
      stream.on('error', () => {});
    }),
    cancel: () => {
      stream.cancel();
      client.close();
    },
  };
  return sub;
}

const logSize = async (path: string): Promise<number> => (await stat(path)).size;

/** The last `line-N` number in a log file (CRI format: `<time> stdout F line-N`). */
async function lastLine(path: string): Promise<number> {
  const lines = (await readFile(path, 'utf8')).trimEnd().split('\n');
  const m = /line-(\d+)$/.exec(lines[lines.length - 1] ?? '');
  return m ? Number(m[1]) : 0;
}

beforeAll(async () => {
  // no runtime configured: pods run under the default handler, `berth` (berth's shim)
  cri = await startCriDaemon({
    name: 'restart',
    network: {},
    images: { 'e2e/app:v1': { layers: ['busybox'] } },
    pull: ['e2e/app:v1'],
  });
  subnet = cri.net!.subnet;
  image = cri.image('e2e/app:v1');
}, 120_000);

// whatever a failed test left running: pods, shims, mounts, the bridge
afterAll(() => cri?.stop(), 120_000);

test(`${PODS} pods outlive a berthd SIGKILL: listed, exec'd, logging, then stopped and removed clean`, async () => {
  const t0 = Date.now();
  const pods = await Promise.all(Array.from({ length: PODS }, (_, i) => startPod(i + 1)));
  const tStarted = Date.now();
  expect(new Set(pods.map((p) => p.ip)).size).toBe(PODS);
  for (const p of pods) expect(p.ip.startsWith(`${subnet}.`)).toBe(true);
  const runtime = (await inspectp(pods[0]!.id)).info;
  expect(runtime.runtimeType).toBe('io.containerd.berth.v1');
  const podsBefore = JSON.parse(await ok('pods', '-o', 'json')).items;
  const psBefore = JSON.parse(await ok('ps', '-a', '-o', 'json')).containers;
  expect(podsBefore).toHaveLength(PODS);
  expect(psBefore).toHaveLength(PODS);
  await until('every log to have output', async () => {
    for (const p of pods) if ((await logSize(p.logPath).catch(() => 0)) === 0) return false;
    return true;
  });
  const lastBefore = await Promise.all(pods.map((p) => lastLine(p.logPath)));
  const shimsBefore = shimPids();
  expect(shimsBefore.length).toBeGreaterThan(0);
  // Everything crictl inspectp and inspect show, verbose info included.
  const inspected = () =>
    Promise.all(pods.map(async (p) => [await ok('inspectp', p.id), await ok('inspect', p.container)]));
  const inspectedBefore = await inspected();

  // A subscriber of the first daemon sees its stream end with the daemon, not hang.
  const early = subscribe();
  await cri.berthd.stop('SIGKILL');
  const tKilled = Date.now();
  expect((await early.ended).code).not.toBe(grpc.status.OK);
  early.cancel();
  // The shims and everything they run stay.
  for (const pid of shimsBefore) expect(isAlive(pid)).toBe(true);
  for (const p of pods) {
    expect(isAlive(p.pausePid)).toBe(true);
    expect(isAlive(p.pid)).toBe(true);
  }

  await cri.restart();
  const tRestarted = Date.now();

  // Listed as before, by crictl: the same pods and containers, states, IPs and processes.
  const podsAfter = JSON.parse(await ok('pods', '-o', 'json')).items;
  const psAfter = JSON.parse(await ok('ps', '-a', '-o', 'json')).containers;
  const byId = <T extends { id: string }>(xs: T[]) => [...xs].sort((a, b) => a.id.localeCompare(b.id));
  expect(byId(podsAfter)).toEqual(byId(podsBefore));
  expect(byId(psAfter)).toEqual(byId(psBefore));
  const inspectedAfter = await inspected();
  for (const [i, [pod, ctr]] of inspectedAfter.entries()) {
    expect(JSON.parse(pod!)).toEqual(JSON.parse(inspectedBefore[i]![0]!));
    expect(JSON.parse(ctr!)).toEqual(JSON.parse(inspectedBefore[i]![1]!));
  }
  for (const p of pods) {
    const [pi, ci] = await Promise.all([inspectp(p.id), inspect(p.container)]);
    expect(pi.status.state).toBe('SANDBOX_READY');
    expect(pi.status.network.ip).toBe(p.ip);
    expect(pi.info.pid).toBe(p.pausePid);
    expect(pi.info.runtimeType).toBe('io.containerd.berth.v1');
    expect(ci.status.state).toBe('CONTAINER_RUNNING');
    expect(ci.info.pid).toBe(p.pid);
    expect(ci.info.sandboxID).toBe(p.id);
    expect(ci.status.logPath).toBe(p.logPath);
  }

  // ExecSync in each, in the pod's namespaces (its hostname, its address).
  await Promise.all(
    pods.map(async (p) => {
      expect(await ok('exec', '-s', p.container, 'hostname')).toBe(`pod${p.n}-host`);
      expect(await ok('exec', '-s', p.container, 'cat', '/proc/net/fib_trie')).toContain(p.ip);
    }),
  );

  // The logs keep growing, past what they held before the kill.
  const sizes = await Promise.all(pods.map((p) => logSize(p.logPath)));
  await until('every log to grow after the restart', async () => {
    for (const [i, p] of pods.entries()) if ((await logSize(p.logPath)) <= sizes[i]!) return false;
    return true;
  });
  const lastAfter = await Promise.all(pods.map((p) => lastLine(p.logPath)));
  for (const [i] of pods.entries()) expect(lastAfter[i]!).toBeGreaterThan(lastBefore[i]!);
  const tChecked = Date.now();

  // Two subscribers at once; a third goes away before anything happens.
  const a = subscribe();
  const b = subscribe();
  const gone = subscribe();
  gone.cancel();
  // Until both streams are live on the daemon's side (nothing says so before a first event), a
  // container is created in the last pod; once both saw its CREATED it is removed again.
  const host = pods[PODS - 1]!;
  let probe = '';
  for (let k = 0; probe === ''; k++) {
    if (k === 20) throw new Error('the subscribers never saw an event');
    const cfg = join(cri.dir, `probe${k}.json`);
    await writeFile(
      cfg,
      JSON.stringify({ metadata: { name: `probe${k}` }, image: { image }, command: ['/bin/true'] }),
    );
    const id = await ok('create', host.id, cfg, host.config);
    const seen = (s: typeof a) => s.events.some((e) => e.containerId === id);
    await until('the probe event', () => seen(a) && seen(b), 1000).then(
      () => {
        probe = id;
      },
      () => {},
    );
    await ok('rm', id);
  }
  const probeEvents = (s: typeof a) =>
    s.events.filter((e) => e.containerId === probe).map((e) => e.containerEventType);
  await until('the probe removal event', () => probeEvents(a).length === 2 && probeEvents(b).length === 2);
  for (const s of [a, b])
    expect(probeEvents(s)).toEqual(['CONTAINER_CREATED_EVENT', 'CONTAINER_DELETED_EVENT']);

  // A pod run after the restart gets an address of its own, beside the recovered ones.
  const fresh = await startPod(PODS + 1);
  expect(pods.map((p) => p.ip)).not.toContain(fresh.ip);
  expect(fresh.ip.startsWith(`${subnet}.`)).toBe(true);

  // Exits the restarted daemon notices by itself: a container's process; a pod's pause process,
  // whose end kills the pod's container too (it is init of the PID namespace they share).
  const [killedCtr, killedPause, ...rest] = pods as [Pod, Pod, ...Pod[]];
  process.kill(killedCtr.pid, 'SIGKILL');
  process.kill(killedPause.pausePid, 'SIGKILL');
  await until('the exits to be seen', async () => {
    const [c, p, pc] = await Promise.all([
      inspect(killedCtr.container),
      inspectp(killedPause.id),
      inspect(killedPause.container),
    ]);
    return (
      c.status.state === 'CONTAINER_EXITED' &&
      p.status.state === 'SANDBOX_NOTREADY' &&
      pc.status.state === 'CONTAINER_EXITED'
    );
  });
  expect((await inspect(killedCtr.container)).status.exitCode).toBe(137);
  expect((await inspect(killedPause.container)).status.exitCode).toBe(137);

  // StopContainer with a grace period (the loop exits 143 on SIGTERM), then the pods.
  const all = [...pods, fresh];
  await Promise.all([...rest, fresh].map((p) => ok('stop', '--timeout', '10', p.container)));
  for (const p of [...rest, fresh]) {
    const ci = await inspect(p.container);
    expect(ci.status.state).toBe('CONTAINER_EXITED');
    expect(ci.status.exitCode).toBe(143);
  }
  await Promise.all(all.map((p) => ok('stopp', p.id)));
  await Promise.all(all.map((p) => ok('rmp', p.id)));
  const tRemoved = Date.now();

  expect(JSON.parse(await ok('pods', '-o', 'json')).items).toEqual([]);
  expect(JSON.parse(await ok('ps', '-a', '-o', 'json')).containers).toEqual([]);
  await until('every shim to exit', () => shimPids().length === 0, 10_000);
  for (const p of all) {
    expect(isAlive(p.pausePid)).toBe(false);
    expect(isAlive(p.pid)).toBe(false);
  }
  // No netns pin and no /dev/shm is left; the pins' directory is a bind of its own while berthd runs.
  const netnsDir = join(cri.berthd.state, 'io.containerd.grpc.v1.cri', 'netns');
  expect(mountsUnder().filter((m) => m !== netnsDir)).toEqual([]);
  expect(existsSync(netnsDir) ? await readdir(netnsDir) : []).toEqual([]);
  expect(await allocations()).toEqual([]);

  // Each subscriber saw every transition of every pod, in order: the new pod's run, the exits
  // and stops, both removals.
  const stops = (p: Pod) => [`${p.container} CONTAINER_STOPPED_EVENT`, `${p.id} CONTAINER_STOPPED_EVENT`];
  const byStops = (p: Pod) => (x: string, y: string) => stops(p).indexOf(x) - stops(p).indexOf(y);
  const want = (p: Pod) => [
    ...(p === fresh
      ? [
          `${p.id} CONTAINER_CREATED_EVENT`,
          `${p.id} CONTAINER_STARTED_EVENT`,
          `${p.container} CONTAINER_CREATED_EVENT`,
          `${p.container} CONTAINER_STARTED_EVENT`,
        ]
      : []),
    ...stops(p),
    `${p.container} CONTAINER_DELETED_EVENT`,
    `${p.id} CONTAINER_DELETED_EVENT`,
  ];
  const ofPod = (events: wire.cri.ContainerEventResponse[], p: Pod) => {
    const seen = events
      .filter((e) => e.containerId === p.id || e.containerId === p.container)
      .map((e) => `${e.containerId} ${e.containerEventType}`);
    // the pause process and the container died together: either exit may be seen first
    if (p === killedPause) seen.splice(0, 2, ...[...seen.slice(0, 2)].sort(byStops(p)));
    return seen;
  };
  await until(
    'every event at both subscribers',
    () =>
      all.every(
        (p) => ofPod(a.events, p).length >= want(p).length && ofPod(b.events, p).length >= want(p).length,
      ),
    20_000,
    () =>
      JSON.stringify({
        a: a.status,
        b: b.status,
        seen: all.map((p) => [ofPod(a.events, p), ofPod(b.events, p)]),
      }),
  );
  for (const p of all) {
    expect(ofPod(a.events, p)).toEqual(want(p));
    expect(ofPod(b.events, p)).toEqual(want(p));
  }
  expect(gone.events).toEqual([]);
  // What the events carry: the pod's status and its containers' at that point.
  const exitSeen = a.events.find((e) => e.containerId === killedCtr.container)!;
  expect(exitSeen.podSandboxStatus?.id).toBe(killedCtr.id);
  expect(exitSeen.podSandboxStatus?.state).toBe('SANDBOX_READY');
  expect(exitSeen.podSandboxStatus?.network?.ip).toBe(killedCtr.ip);
  expect(exitSeen.containersStatuses.map((s) => [s.id, s.state, s.exitCode])).toEqual([
    [killedCtr.container, 'CONTAINER_EXITED', 137],
  ]);
  const stopped = a.events.find((e) => e.containerId === rest[0]!.container)!;
  expect(stopped.containersStatuses.map((s) => [s.id, s.state, s.exitCode])).toEqual([
    [rest[0]!.container, 'CONTAINER_EXITED', 143],
  ]);
  const podStopped = a.events.find(
    (e) => e.containerId === killedPause.id && e.containerEventType === 'CONTAINER_STOPPED_EVENT',
  )!;
  expect(podStopped.podSandboxStatus?.state).toBe('SANDBOX_NOTREADY');
  expect(podStopped.containersStatuses.map((s) => s.id)).toEqual([killedPause.container]);
  expect(Number(podStopped.createdAt)).toBeGreaterThan(0);
  const podDeleted = a.events.find(
    (e) => e.containerId === rest[0]!.id && e.containerEventType === 'CONTAINER_DELETED_EVENT',
  )!;
  expect(podDeleted.podSandboxStatus).toBeFalsy();
  expect(podDeleted.containersStatuses).toEqual([]);
  const freshStarted = a.events.find(
    (e) => e.containerId === fresh.container && e.containerEventType === 'CONTAINER_STARTED_EVENT',
  )!;
  expect(freshStarted.containersStatuses.map((s) => [s.id, s.state])).toEqual([
    [fresh.container, 'CONTAINER_RUNNING'],
  ]);
  a.cancel();
  b.cancel();
  // The restarted daemon had nothing to complain about (with ten pods, Node's listener warning once did).
  expect(
    cri.berthd
      .logs()
      .split('\n')
      .filter((l) => /level=(warning|error|fatal)|Warning:/.test(l)),
  ).toEqual([]);

  console.log(
    `restart e2e: ${PODS} pods started in ${tStarted - t0} ms, restart ${tRestarted - tKilled} ms, ` +
      `checks ${tChecked - tRestarted} ms, stop+remove ${tRemoved - tChecked} ms`,
  );
}, 300_000);
