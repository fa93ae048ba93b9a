/**
 * The streaming server end to end, with stock crictl (cri-tools 1.26.1, Go's spdystream client)
 * against bin/berthd: exec with and without stdin, exec -it on a terminal (through script(1)),
 * output past SPDY's 64 KiB window, the exit code, attach, and port-forward to a busybox httpd
 * inside a pod's network namespace with several connections at once. Error paths: an unknown
 * container, a stopped one. Needs root, runc, overlayfs, the CNI plugins, docker-registry, a build.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { CRICTL, type CriDaemon, freePort, httpGet, registryInstalled, startCriDaemon } from '@berth/testkit';

const CAN_RUN =
  process.getuid?.() === 0 && existsSync(CRICTL) && existsSync('/usr/lib/cni/bridge') && registryInstalled();
const describeIf = CAN_RUN ? describe : describe.skip;

describeIf('streaming with crictl against berthd', () => {
  let cri: CriDaemon;
  let busybox: string;
  let pod: string;
  let podFile: string;
  let shell: string;
  let web: string;

  const endpoint = () => cri.endpoint;
  const crictl = (...args: string[]) => cri.crictl(...args);
  const ok = (...args: string[]) => cri.ok(...args);
  /** crictl with `input` on its stdin. */
  const withInput = (input: string, ...args: string[]) => cri.crictlWithInput(input, ...args);

  const file = (name: string, content: unknown): string => cri.writeJson(name, content);

  beforeAll(async () => {
    cri = await startCriDaemon({
      name: 'stream',
      network: {},
      criConfig: { stream_server_port: '0' },
      images: {
        'e2e/busybox:1.0': { layers: ['busybox'], config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } },
      },
      pull: ['e2e/busybox:1.0'],
    });
    busybox = cri.image('e2e/busybox:1.0');
    podFile = file('pod', {
      metadata: { name: 'stream', namespace: 'e2e', uid: 'uid-stream', attempt: 0 },
      log_directory: cri.logDir('stream'),
      linux: {},
    });
    pod = await ok('runp', podFile);
    const ctr = (name: string, command: string[], extra: object = {}) =>
      file(name, {
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

  afterAll(() => cri?.stop(), 60_000);

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

  /** `crictl port-forward POD LOCAL:port`, once it says it is forwarding (the caller kills it). */
  async function portForward(port: number) {
    const local = await freePort();
    const child = spawn(CRICTL, [...endpoint(), 'port-forward', pod, `${local}:${port}`], { stdio: 'pipe' });
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('Forwarding from')) resolve();
        });
        child.on('exit', (code) => reject(new Error(`crictl port-forward exited ${code}: ${out}`)));
      });
    } catch (e) {
      child.kill();
      throw e;
    }
    return { local, child };
  }

  it('port-forwards to the pod: several connections at once reach httpd inside its netns', async () => {
    const { local, child } = await portForward(8080);
    try {
      const url = `http://127.0.0.1:${local}/`;
      const bodies = await Promise.all([httpGet(url, 10_000), httpGet(url, 10_000), httpGet(url, 10_000)]);
      expect(bodies).toEqual(['hello-pf\n', 'hello-pf\n', 'hello-pf\n']);
    } finally {
      child.kill();
    }
  });

  it('port-forward to a port nobody listens on in the pod answers the refusal on the error stream', async () => {
    const { local, child } = await portForward(8081);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    try {
      // httpd listens on 8080 only: the dial inside the pod's netns is refused, not answered by the host.
      await expect(httpGet(`http://127.0.0.1:${local}/`, 5000)).rejects.toThrow();
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
      file('stopped', {
        metadata: { name: 'stopped' },
        image: { image: busybox },
        command: ['true'],
        linux: {},
      }),
      file('pod', JSON.parse(readFileSync(podFile, 'utf8'))),
    );
    const r = await crictl('exec', stopped, 'true');
    expect(r.stderr).toMatch(
      new RegExp(`FailedPrecondition desc = container \\\\?"${stopped}\\\\?" is in CONTAINER_CREATED state`),
    );
    const pf = await crictl('port-forward', 'f00dfeed', '1:1');
    expect(pf.stderr).toMatch(/NotFound desc = sandbox \\?"f00dfeed\\?" not found/);
  });
});
