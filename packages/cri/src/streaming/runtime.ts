import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { type Duplex, Writable } from 'node:stream';
import { FailedPreconditionError, type wire } from '@berth/api';
import { copyIo, newFifoSet, type oci, removeFifoSet } from '@berth/client';
import { connectInNetns } from '@berth/sys';
import type { CriService } from '../service';
import type { RemoteIo } from './protocol';

const PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
// How long output may keep arriving after the process exited before its streams are cut.
const IO_DRAIN_MS = 2000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());
const discard = () =>
  new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });

/** What the streaming server runs once a client came with its token. */
export interface StreamingRuntime {
  /** Runs the command; resolves with its exit code. */
  exec(req: wire.cri.ExecRequest, io: RemoteIo): Promise<number>;
  /** Attaches until the container's output ends, or the client's stdin ends (stdin_once aside). */
  attach(req: wire.cri.AttachRequest, io: RemoteIo): Promise<void>;
  /** Copies between `stream` and 127.0.0.1:port in the pod's network namespace until both ends closed. */
  portForward(podSandboxId: string, port: number, stream: Duplex): Promise<void>;
}

/** The CRI plugin's containers and pods as the streaming server's runtime. */
export class CriStreamingRuntime implements StreamingRuntime {
  constructor(private readonly cri: CriService) {}

  private runningContainer(id: string) {
    const rec = this.cri.containers.get(id);
    if (rec.state !== 'CONTAINER_RUNNING')
      throw new FailedPreconditionError(`container "${rec.id}" is in ${rec.state} state`);
    return rec;
  }

  /** The checks Exec/Attach/PortForward make before handing out a URL. */
  checkContainer(id: string): void {
    this.runningContainer(id);
  }

  checkSandbox(id: string): void {
    const s = this.cri.sandboxes.get(id);
    if (s.state !== 'SANDBOX_READY')
      throw new FailedPreconditionError(`sandbox "${s.id}" is not running (${s.state})`);
  }

  async exec(req: wire.cri.ExecRequest, io: RemoteIo): Promise<number> {
    const rec = this.runningContainer(req.containerId);
    const deps = this.cri.deps;
    const ctx = this.cri.ctx();
    const tty = io.tty;
    const execId = randomBytes(16).toString('hex');
    // The spec and the FIFOs do not depend on each other: fetched and made at once.
    const [got, made] = await Promise.allSettled([
      deps.containers.get(ctx, rec.id),
      newFifoSet(join(deps.state, 'containers', rec.id, 'exec'), execId, {
        stdin: io.stdin !== undefined,
        terminal: tty,
      }),
    ]);
    if (got.status === 'rejected' || made.status === 'rejected') {
      if (made.status === 'fulfilled') await removeFifoSet(made.value).catch(() => {});
      throw got.status === 'rejected' ? got.reason : (made as PromiseRejectedResult).reason;
    }
    const fifos = made.value;
    const spec = JSON.parse(got.value.spec!.value.toString()) as oci.Spec;
    const process: oci.Process = { ...spec.process!, args: [...req.cmd], terminal: tty };
    if (tty) process.env = [...(process.env ?? []), 'TERM=xterm'];
    const ref = { containerId: rec.id, execId };
    let started = false;
    let stdinEnded = false;
    let stdinClosed = false;
    // The process reads EOF once our end of the FIFO and the shim's (CloseIO) are closed.
    const closeStdin = () => {
      if (!started || !stdinEnded || stdinClosed) return;
      stdinClosed = true;
      void pio
        .closeStdin()
        .then(() => deps.tasks.closeIO(ctx, { ...ref, stdin: true }))
        .catch(() => {});
    };
    const pio = copyIo(
      fifos,
      { stdin: io.stdin, stdout: io.stdout ?? discard(), stderr: io.stderr ?? discard() },
      {
        onStdinEnd: () => {
          stdinEnded = true;
          closeStdin();
        },
      },
    );
    let created = false;
    const kill = () => void deps.tasks.kill(ctx, { ...ref, signal: 9, all: false }).catch(() => {});
    try {
      await deps.tasks.exec(ctx, {
        ...ref,
        stdin: fifos.stdin,
        stdout: fifos.stdout,
        stderr: fifos.stderr,
        terminal: tty,
        spec: { typeUrl: PROCESS_TYPE_URL, value: Buffer.from(JSON.stringify(process)) },
      });
      created = true;
      const waiting = deps.tasks.wait(ctx, ref);
      waiting.catch(() => {});
      await deps.tasks.start(ctx, ref);
      started = true;
      closeStdin();
      if (tty)
        io.onResize((s) => {
          void deps.tasks.resizePty(ctx, { ...ref, width: s.width, height: s.height }).catch(() => {});
        });
      // A client that went away takes its process with it (containerd cancels the exec).
      io.signal.addEventListener('abort', kill, { once: true });
      const res = await waiting;
      await Promise.race([pio.wait(), sleep(IO_DRAIN_MS)]);
      return res.exitStatus;
    } finally {
      io.signal.removeEventListener('abort', kill);
      // The exit code and all the output are in hand: the client learns them while the exec is
      // deleted in the shim and its FIFOs removed (round trips the answer need not wait for).
      void Promise.all([
        created ? deps.tasks.deleteProcess(ctx, ref).catch(() => {}) : undefined,
        pio.close().catch(() => {}),
      ]);
    }
  }

  async attach(req: wire.cri.AttachRequest, io: RemoteIo): Promise<void> {
    const rec = this.runningContainer(req.containerId);
    const a = this.cri.containerManager.attachStreams(rec.id);
    const ctx = this.cri.ctx();
    await new Promise<void>((resolve) => {
      let unsubscribe = () => {};
      const done = () => {
        unsubscribe();
        resolve();
      };
      unsubscribe = a.subscribe((stream, data) => {
        const out = a.tty || stream === 'stdout' ? io.stdout : io.stderr;
        out?.write(data);
      }, done);
      io.signal.addEventListener('abort', done, { once: true });
      if (a.tty)
        io.onResize((s) => {
          void this.cri.deps.tasks
            .resizePty(ctx, { containerId: rec.id, execId: '', width: s.width, height: s.height })
            .catch(() => {});
        });
      const stdin = io.stdin;
      if (stdin) {
        stdin.on('data', (d: Buffer) => a.stdin?.write(d));
        stdin.once('end', () => {
          // containerd: with stdin_once (and no tty) the container's stdin closes; else this client detaches.
          if (rec.config.stdinOnce && !a.tty && a.closeStdin) void a.closeStdin().catch(() => {});
          else done();
        });
      }
    });
  }

  async portForward(podSandboxId: string, port: number, stream: Duplex): Promise<void> {
    const sandbox = this.cri.sandboxes.get(podSandboxId);
    if (sandbox.state !== 'SANDBOX_READY')
      throw new FailedPreconditionError(`sandbox "${sandbox.id}" is not running`);
    if (!Number.isInteger(port) || port <= 0 || port > 65535)
      throw new FailedPreconditionError(`invalid port ${port}`);
    return forward(sandbox.netnsPath, port, stream);
  }
}

/**
 * Host-network pods: the host's loopback is theirs. Others: a socket made inside the pod's network
 * namespace by @berth/sys (setns around socket(2) on this thread), so no process per connection.
 */
async function dial(netnsPath: string | undefined, port: number): Promise<Socket> {
  if (!netnsPath) {
    const sock = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    await once(sock, 'connect');
    return sock;
  }
  return connectInNetns(netnsPath, port, { allowHalfOpen: true });
}

async function forward(netnsPath: string | undefined, port: number, stream: Duplex): Promise<void> {
  const sock = await dial(netnsPath, port);
  if (stream.destroyed) {
    sock.destroy();
    return;
  }
  // Each side's FIN is passed on (half-close); the forward is over when the connection closes.
  await new Promise<void>((resolve) => {
    stream.pipe(sock);
    sock.pipe(stream);
    sock.once('error', () => resolve());
    sock.once('close', () => resolve());
    stream.once('close', () => sock.destroy());
  });
}
