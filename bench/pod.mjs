// Pod start latency and memory per pod through the CRI, berthd against containerd, both
// given the same config.toml (CRI section, CNI bridge + host-local + portmap, runc.v2 as the
// default runtime) and driven by the same crictl (cri-tools 1.26.1 from ../shared/tools):
// the time from `crictl runp` to a started container in the new pod (runp + create + start),
// median and best of N after one warm-up, the configurations taking turns; then 20 pods each
// with a sleeping container, counting the RSS and PSS of the daemon plus every shim serving it
// divided by the pods; and the round trip of `crictl exec` into a running container, by ExecSync
// (`exec -s`) and by the streaming server (`exec`). berthd is measured with berth's shim (runtime handler `berth`) and with
// containerd-shim-runc-v2 (`runc`); containerd with containerd-shim-runc-v2.
// Usage: pnpm bench pod [--runs 10] [--pods 20]
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { exec, median, memoryOf, processesOf, report, stopAll, testkit, timed } from './_common.mjs';

const execFileP = promisify(execFile);

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const RUNS = arg('runs', 10);
const PODS = arg('pods', 20);

const CRICTL = join(import.meta.dirname, '..', '..', 'shared', 'tools', 'crictl');
if (!existsSync(CRICTL)) {
  console.error(`${CRICTL} is missing: the shared kit must sit beside the repository`);
  process.exit(1);
}
const PAUSE = 'registry.k8s.io/pause:3.6';
const IMAGE = 'docker.io/library/busybox:berth-bench';

const dir = testkit.makeTempDir('berth-bench-pod-');
const image = testkit.buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } });
const pause = testkit.buildImage({
  layers: ['busybox'],
  config: { Entrypoint: ['/bin/sleep', '2147483647'], Env: ['PATH=/bin'] },
});
testkit.writeOciLayout(join(dir, 'busybox.tar'), image, IMAGE);
testkit.writeOciLayout(join(dir, 'pause.tar'), pause, PAUSE);

/** The same CRI config for both daemons; each its own bridge and subnet so both can run at once. */
function config(name, sub) {
  const d = join(dir, name);
  const netd = join(d, 'net.d');
  mkdirSync(netd, { recursive: true });
  const bridge = `bbench${sub}`;
  writeFileSync(
    join(netd, '10-bench.conflist'),
    JSON.stringify({
      cniVersion: '1.0.0',
      name: `bench-${name}`,
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipMasq: false,
          ipam: {
            type: 'host-local',
            dataDir: join(d, 'ipam'),
            ranges: [[{ subnet: `10.${sub}.0.0/16` }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    }),
  );
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return {
    bridge,
    text: [
      'version = 2',
      `[plugins."io.containerd.internal.v1.opt"]`,
      `  path = "${join(d, 'opt')}"`,
      `[${cri}]`,
      `  sandbox_image = "${PAUSE}"`,
      '  restrict_oom_score_adj = true',
      '  netns_mounts_under_state_dir = true',
      `[${cri}.containerd]`,
      '  snapshotter = "overlayfs"',
      '  default_runtime_name = "runc"',
      `[${cri}.containerd.runtimes.runc]`,
      '  runtime_type = "io.containerd.runc.v2"',
      `[${cri}.cni]`,
      '  bin_dir = "/usr/lib/cni"',
      `  conf_dir = "${netd}"`,
      '  max_conf_num = 1',
      '',
    ].join('\n'),
  };
}

/** crictl against daemon `d`; resolves with its stdout (the id runp and create print). */
async function crictl(d, args) {
  const endpoint = `unix://${d.address}`;
  try {
    const { stdout } = await execFileP(CRICTL, ['--runtime-endpoint', endpoint, '--image-endpoint', endpoint, '-t', '60s', ...args]);
    return stdout.trim();
  } catch (err) {
    throw new Error(`crictl ${args.join(' ')}: ${err.stderr || err.message}`);
  }
}

let serial = 0;
function podFiles(tag) {
  const n = ++serial;
  const pod = join(dir, `pod-${tag}-${n}.json`);
  const ctrCfg = join(dir, `ctr-${tag}-${n}.json`);
  const logs = join(dir, 'logs', `${tag}-${n}`);
  mkdirSync(logs, { recursive: true });
  writeFileSync(
    pod,
    JSON.stringify({
      metadata: { name: `bench-${tag}-${n}`, namespace: 'bench', uid: `uid-${tag}-${n}`, attempt: 0 },
      log_directory: logs,
      linux: {},
    }),
  );
  writeFileSync(
    ctrCfg,
    JSON.stringify({
      metadata: { name: 'sleeper' },
      image: { image: IMAGE },
      command: ['/bin/sleep', '3600'],
      log_path: 'sleeper.log',
      linux: {},
    }),
  );
  return { pod, ctr: ctrCfg };
}

/** runp + create + start; returns the pod id. */
async function startPod(cfg, files) {
  const podId = await crictl(cfg.d, ['runp', '--runtime', cfg.handler, files.pod]);
  const ctrId = await crictl(cfg.d, ['create', podId, files.ctr, files.pod]);
  await crictl(cfg.d, ['start', ctrId]);
  return podId;
}

async function removePod(cfg, podId) {
  await crictl(cfg.d, ['stopp', podId]);
  await crictl(cfg.d, ['rmp', podId]);
}

const daemons = {};
const bridges = [];
const results = {};
try {
  const b = config('berthd', 201);
  bridges.push(b.bridge);
  daemons.berthd = await testkit.startBerthd({ config: b.text });
  if (testkit.containerdInstalled()) {
    const c = config('containerd', 202);
    bridges.push(c.bridge);
    daemons.containerd = await testkit.startContainerd({ config: c.text });
  } else console.error('containerd is not installed: measuring berthd alone');

  const configs = [];
  for (const [name, d] of Object.entries(daemons)) {
    for (const archive of ['busybox.tar', 'pause.tar'])
      await exec('/usr/bin/ctr', ['--address', d.address, '-n', 'k8s.io', 'images', 'import', join(dir, archive)]);
    for (const handler of name === 'berthd' ? ['berth', 'runc'] : ['runc'])
      configs.push({ name, d, handler, tag: `${name[0]}${handler[0]}` });
  }

  const times = configs.map(() => []);
  for (const cfg of configs) await removePod(cfg, await startPod(cfg, podFiles(cfg.tag))); // warm-up
  for (let i = 0; i < RUNS; i++) {
    for (const [k, cfg] of configs.entries()) {
      const files = podFiles(cfg.tag);
      let podId;
      times[k].push(
        await timed(async () => {
          podId = await startPod(cfg, files);
        }),
      );
      await removePod(cfg, podId);
    }
  }
  for (const [k, cfg] of configs.entries()) {
    const r = { median: median(times[k]) * 1000, best: Math.min(...times[k]) * 1000 };
    results[`${cfg.name} ${cfg.handler}`] = { seq: r };
    console.log(`${cfg.name} ${cfg.handler}: runp+create+start median ${r.median.toFixed(0)} ms, best ${r.best.toFixed(0)} ms`);
  }

  // crictl exec round trips into one running container: ExecSync (`exec -s`) and the
  // streaming Exec (`exec`: the URL from the CRI, then SPDY to the streaming server).
  for (const cfg of configs) {
    const files = podFiles(`${cfg.tag}x`);
    const podId = await crictl(cfg.d, ['runp', '--runtime', cfg.handler, files.pod]);
    try {
      const ctrId = await crictl(cfg.d, ['create', podId, files.ctr, files.pod]);
      await crictl(cfg.d, ['start', ctrId]);
      for (const [mode, flags] of [
        ['sync', ['-s']],
        ['stream', []],
      ]) {
        const runs = [];
        await crictl(cfg.d, ['exec', ...flags, ctrId, '/bin/true']); // warm-up
        for (let i = 0; i < RUNS; i++) runs.push(await timed(() => crictl(cfg.d, ['exec', ...flags, ctrId, '/bin/true'])));
        const r = { median: median(runs) * 1000, best: Math.min(...runs) * 1000 };
        results[`${cfg.name} ${cfg.handler}`][`exec-${mode}`] = r;
        console.log(`${cfg.name} ${cfg.handler}: crictl exec ${flags.join(' ')} /bin/true median ${r.median.toFixed(0)} ms, best ${r.best.toFixed(0)} ms`);
      }
    } finally {
      await removePod(cfg, podId).catch(() => {});
    }
  }

  for (const cfg of configs) {
    const pods = [];
    try {
      for (let i = 0; i < PODS; i++) pods.push(await startPod(cfg, podFiles(`${cfg.tag}m`)));
      await new Promise((r) => setTimeout(r, 2000)); // let the shims settle after the burst
      const shims = processesOf(cfg.d.address);
      let rss = 0;
      let pss = 0;
      for (const pid of [cfg.d.pid, ...shims]) {
        const m = memoryOf(pid);
        rss += m.rss;
        pss += m.pss;
      }
      const mem = { rss: rss / 1024 / PODS, pss: pss / 1024 / PODS, shims: shims.length };
      results[`${cfg.name} ${cfg.handler}`].mem = mem;
      console.log(
        `${cfg.name} ${cfg.handler}: ${PODS} pods with a sleeping container, ${mem.shims} shim processes, per pod RSS ${mem.rss.toFixed(2)} MiB, PSS ${mem.pss.toFixed(2)} MiB`,
      );
    } finally {
      for (const id of pods) await removePod(cfg, id).catch(() => {});
    }
  }
} finally {
  await stopAll(daemons);
  for (const br of bridges) await exec('/usr/sbin/ip', ['link', 'del', br]).catch(() => {});
  rmSync(dir, { recursive: true, force: true });
}

const c = results['containerd runc'];
const rows = [];
for (const handler of ['berth', 'runc']) {
  const b = results[`berthd ${handler}`];
  const shim = handler === 'berth' ? 'berth shim' : 'runc.v2 shim';
  rows.push(
    { metric: `runp + create + start, median (${shim})`, berthd: b.seq.median, containerd: c?.seq.median, unit: 'ms' },
    { metric: `runp + create + start, best (${shim})`, berthd: b.seq.best, containerd: c?.seq.best, unit: 'ms' },
    { metric: `crictl exec -s (ExecSync) round trip, median (${shim})`, berthd: b['exec-sync'].median, containerd: c?.['exec-sync'].median, unit: 'ms' },
    { metric: `crictl exec (streaming) round trip, median (${shim})`, berthd: b['exec-stream'].median, containerd: c?.['exec-stream'].median, unit: 'ms' },
    { metric: `RSS per pod, ${PODS} running (${shim})`, berthd: b.mem.rss, containerd: c?.mem.rss, unit: 'MiB' },
    { metric: `PSS per pod, ${PODS} running (${shim})`, berthd: b.mem.pss, containerd: c?.mem.pss, unit: 'MiB' },
  );
}
report(`Pods through the CRI (crictl), ${RUNS} runs; containerd with containerd-shim-runc-v2`, rows);
