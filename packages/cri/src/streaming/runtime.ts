import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { FailedPreconditionError, type wire } from '@berth/api';
import { connectInNetns } from '@berth/sys';
import type { ExecProcess } from '../container/service';
import type { CriService } from '../service';
import type { RemoteIo } from './protocol';

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
    const deps = this.cri.deps;
    const ctx = this.cri.ctx();
    let exec: ExecProcess | undefined;
    let stdinEnded = false;
    let stdinClosed = false;
    // The process reads EOF once our end of the FIFO and the shim's (CloseIO) are closed.
    const closeStdin = () => {
      if (!exec || !stdinEnded || stdinClosed) return;
      stdinClosed = true;
      const { io: pio, ref } = exec;
      void pio
        .closeStdin()
        .then(() => deps.tasks.closeIO(ctx, { ...ref, stdin: true }))
        .catch(() => {});
    };
    exec = await this.cri.containerManager.startExec(
      ctx,
      req.containerId,
      req.cmd,
      io.tty,
      { stdin: io.stdin, stdout: io.stdout, stderr: io.stderr },
      {
        onStdinEnd: () => {
          stdinEnded = true;
          closeStdin();
        },
      },
    );
    const ref = exec.ref;
    const kill = () => void deps.tasks.kill(ctx, { ...ref, signal: 9, all: false }).catch(() => {});
    try {
      closeStdin();
      if (io.tty)
        io.onResize((s) => {
          void deps.tasks.resizePty(ctx, { ...ref, width: s.width, height: s.height }).catch(() => {});
        });
      // A client that went away takes its process with it (containerd cancels the exec).
      io.signal.addEventListener('abort', kill, { once: true });
      const res = await exec.exited;
      await exec.drained();
      return res.exitStatus;
    } finally {
      io.signal.removeEventListener('abort', kill);
      exec.release();
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
