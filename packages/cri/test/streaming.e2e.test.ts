/**
 * The streaming server end to end, with stock crictl (cri-tools 1.26.1, Go's spdystream client)
 * against bin/berthd: exec with and without stdin, exec -it on a terminal (through script(1)),
 * output past SPDY's 64 KiB window, the exit code, attach, and port-forward to a busybox httpd
 * inside a pod's network namespace with several connections at once. Error paths: an unknown
 * container, a stopped one. Needs root, runc, overlayfs, the CNI plugins, docker-registry, a build.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import {
  buildImage,
  CRICTL,
  type Daemon,
  freePort,
  makeTempDir,
  pushToRegistry,
  type Registry,
  registryInstalled,
  removeDir,
  crictl as runCrictl,
  startBerthd,
  startRegistry,
} from '@berth/testkit';

const CAN_RUN =
  process.getuid?.() === 0 && existsSync(CRICTL) && existsSync('/usr/lib/cni/bridge') && registryInstalled();
const describeIf = CAN_RUN ? describe : describe.skip;

const BRIDGE = `bstr${process.pid % 100000}`;
const SUBNET_OCTET = 100 + ((process.pid + 37) % 100);

function httpGet(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', timeout: 10_000, agent: false }, (res) => {
      let body = '';
      res.on('data', (b) => (body += b));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('GET timed out')));
    req.on('error', reject);
    req.end();
  });
}

describeIf('streaming with crictl against berthd', () => {
  let dir: string;
  let registry: Registry;
  let daemon: Daemon | undefined;
  let busybox: string;
  let pod: string;
  let shell: string;
  let web: string;

  const endpoint = () => [
    '--runtime-endpoint',
    `unix://${daemon!.address}`,
    '--image-endpoint',
    `unix://${daemon!.address}`,
  ];
  const crictl = (...args: string[]) => runCrictl(daemon!.address, args);
  const ok = async (...args: string[]) => {
    const r = await crictl(...args);
    if (r.code !== 0) throw new Error(`crictl ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    return r.stdout.trim();
  };
  /** crictl with `input` on its stdin. */
  const withInput = (input: string, ...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(
        CRICTL,
        [...endpoint(), ...args],
        { maxBuffer: 16 << 20 },
        (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      );
      child.stdin!.end(input);
    });

  function file(name: string, content: unknown): string {
    const f = join(dir, name);
    writeFileSync(f, JSON.stringify(content));
    return f;
  }

  beforeAll(async () => {
    dir = makeTempDir('berth-stream-');
    registry = await startRegistry();
    const base = buildImage({ layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } });
    const pause = buildImage({ layers: ['busybox'], config: { Entrypoint: ['/bin/sleep', '2147483647'] } });
    await pushToRegistry(registry.url, 'e2e/busybox', '1.0', base);
    await pushToRegistry(registry.url, 'e2e/pause', '3.6', pause);
    busybox = `${registry.host}/e2e/busybox:1.0`;
    const netd = join(dir, 'net.d');
    mkdirSync(netd, { recursive: true });
    writeFileSync(
      join(netd, '10-e2e.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: 'stream-e2e',
        plugins: [
          {
            type: 'bridge',
            bridge: BRIDGE,
            isGateway: true,
            ipam: {
              type: 'host-local',
              dataDir: join(dir, 'ipam'),
              ranges: [[{ subnet: `10.${SUBNET_OCTET}.0.0/16` }]],
            },
          },
        ],
      }),
    );
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    const config = [
      'version = 2',
      `[${cri}]`,
      `  sandbox_image = "${registry.host}/e2e/pause:3.6"`,
      '  netns_mounts_under_state_dir = true',
      '  stream_server_port = "0"',
      '  restrict_oom_score_adj = true',
      `[${cri}.cni]`,
      '  bin_dir = "/usr/lib/cni"',
      `  conf_dir = "${netd}"`,
      '',
    ].join('\n');
    daemon = await startBerthd({ config, dir: join(dir, 'berthd') });
    await ok('pull', busybox);
    mkdirSync(join(dir, 'logs'), { recursive: true });
    const podFile = file('pod.json', {
      metadata: { name: 'stream', namespace: 'e2e', uid: 'uid-stream', attempt: 0 },
      log_directory: join(dir, 'logs'),
      linux: {},
    });
    pod = await ok('runp', podFile);
    const ctr = (name: string, command: string[], extra: object = {}) =>
      file(`${name}.json`, {
        metadata: { name },
        image: { image: busybox },
        command,
        log_path: `${name}.log`,
        linux: {},
        ...extra,
      });
    shell = await ok('create', pod, ctr('shell', ['sh'], { stdin: true }), podFile);
    web = await ok(
      'create',
      pod,
      ctr('web', [
        'sh',
        '-c',
        'mkdir -p /www && echo hello-pf > /www/index.html && exec httpd -f -p 8080 -h /www',
      ]),
      podFile,
    );
    await ok('start', shell);
    await ok('start', web);
  }, 180_000);

  afterAll(async () => {
    if (daemon) {
      if (pod) {
        await crictl('stopp', pod).catch(() => {});
        await crictl('rmp', pod).catch(() => {});
      }
      await daemon.dispose();
    }
    await registry?.stop();
    try {
      execFile('ip', ['link', 'del', BRIDGE]);
    } catch {
      // gone
    }
    const left = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' ')[4])
      .filter((mp): mp is string => !!mp && !!dir && mp.startsWith(dir))
      .reverse();
    for (const mp of left) await new Promise((r) => execFile('umount', ['-l', mp], r));
    if (dir) removeDir(dir);
  }, 60_000);

  it('execs: stdout and stderr apart, the exit code, and output well past 64 KiB', async () => {
    const r = await crictl('exec', shell, 'sh', '-c', 'echo out; echo err >&2; exit 3');
    expect(r.stdout).toBe('out\n');
    expect(r.stderr).toContain('err\n');
    // crictl 1.26 exits 1 and prints the exit code the v4 error stream carried.
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('exit code 3');
    const big = await crictl('exec', shell, 'sh', '-c', 'head -c 300000 /dev/zero | tr "\\0" a');
    expect(big.code).toBe(0);
    expect(big.stdout).toBe('a'.repeat(300000));
  });

  it('execs with stdin (-i): the command reads what crictl was given, and EOF', async () => {
    const r = await withInput('line one\nline two\n', 'exec', '-i', shell, 'sh', '-c', 'cat; echo done');
    expect(r.stdout).toBe('line one\nline two\ndone\n');
    expect(r.code).toBe(0);
  });

  it('execs on a terminal (-it): a tty, its size passed on, input echoed back', async () => {
    const cmd = [
      CRICTL,
      ...endpoint(),
      'exec',
      '-it',
      shell,
      'sh',
      '-c',
      'tty; sleep 1; stty size; read x; echo "got $x"',
    ]
      .map((a) => `'${a}'`)
      .join(' ');
    const r = await new Promise<string>((resolve) => {
      // script(1) gives crictl a terminal of its own (it sends the size it has: 40x100 here);
      // the size is applied just after the process started (as containerd), hence the sleep.
      const child = spawn('script', ['-qc', `stty rows 40 cols 100; ${cmd}`, '/dev/null'], {
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('40 100') && !out.includes('typed')) child.stdin.write('typed\r');
      });
      child.on('close', () => resolve(out));
      setTimeout(() => child.kill(), 20_000).unref();
    });
    expect(r).toMatch(/\/dev\/pts\/\d+/);
    expect(r).toContain('40 100');
    expect(r).toContain('got typed');
  });

  it('attaches (-i) to a shell reading its stdin: input reaches it, its output comes back', async () => {
    const child = spawn(CRICTL, [...endpoint(), 'attach', '-i', shell], { stdio: 'pipe' });
    let out = '';
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('hello-attach')) resolve();
      });
      // Attached once the streams are up; input written before that waits in the pipe.
      child.stdin.write('echo hello-attach\n');
      setTimeout(resolve, 20_000).unref();
    });
    child.stdin.end();
    expect(out).toContain('hello-attach');
    // Without stdin_once the client detaches when its input ends; the container runs on.
    expect(await exited).toBe(0);
    expect(await ok('inspect', '-o', 'go-template', '--template', '{{.status.state}}', shell)).toBe(
      'CONTAINER_RUNNING',
    );
  });

  it('port-forwards to the pod: several connections at once reach httpd inside its netns', async () => {
    const local = await freePort();
    const child = spawn(CRICTL, [...endpoint(), 'port-forward', pod, `${local}:8080`], { stdio: 'pipe' });
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('Forwarding from')) resolve();
        });
        child.on('exit', (code) => reject(new Error(`crictl port-forward exited ${code}: ${out}`)));
      });
      const bodies = await Promise.all([httpGet(local), httpGet(local), httpGet(local)]);
      expect(bodies).toEqual(['hello-pf\n', 'hello-pf\n', 'hello-pf\n']);
    } finally {
      child.kill();
    }
  });

  it('port-forward to a port nobody listens on in the pod answers the refusal on the error stream', async () => {
    const local = await freePort();
    const child = spawn(CRICTL, [...endpoint(), 'port-forward', pod, `${local}:8081`], { stdio: 'pipe' });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('Forwarding from')) resolve();
        });
        child.on('exit', (code) => reject(new Error(`crictl port-forward exited ${code}: ${out}`)));
      });
      // httpd listens on 8080 only: the dial inside the pod's netns is refused, not answered by the host.
      await expect(httpGet(local)).rejects.toThrow();
      const deadline = Date.now() + 10_000;
      while (!stderr.includes('error forwarding port') && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      expect(stderr).toContain(`error forwarding port 8081 to pod ${pod}`);
      expect(stderr).toContain('connect ECONNREFUSED 127.0.0.1:8081');
    } finally {
      child.kill();
    }
  });

  it('refuses an unknown container (NotFound) and one that does not run (FailedPrecondition)', async () => {
    const unknown = await crictl('exec', 'f00dfeed', 'true');
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/NotFound desc = container \\?"f00dfeed\\?" not found/);
    const stopped = await ok(
      'create',
      pod,
      file('stopped.json', {
        metadata: { name: 'stopped' },
        image: { image: busybox },
        command: ['true'],
        linux: {},
      }),
      file('pod.json', JSON.parse(readFileSync(join(dir, 'pod.json'), 'utf8'))),
    );
    const r = await crictl('exec', stopped, 'true');
    expect(r.stderr).toMatch(
      new RegExp(`FailedPrecondition desc = container \\\\?"${stopped}\\\\?" is in CONTAINER_CREATED state`),
    );
    const pf = await crictl('port-forward', 'f00dfeed', '1:1');
    expect(pf.stderr).toMatch(/NotFound desc = sandbox \\?"f00dfeed\\?" not found/);
  });
});
