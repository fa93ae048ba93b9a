/**
 * containerd.task.v2.Task: the API a daemon calls on this shim. One service serves every
 * container of its group; each request names its container.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import {
  FailedPreconditionError,
  Failpoints,
  failpoint,
  InvalidArgumentError,
  type Mount,
  NotFoundError,
  NotImplementedError,
  SHIM_FAILPOINT_ANNOTATION_PREFIX,
  UnavailableError,
  validateIdentifier,
  type wire,
} from '@berth/api';
import { mountAll, unmountAll } from '@berth/sys';
import type { ServiceHandlers, TtrpcCallContext } from '@berth/ttrpc';
import { Cgroup } from './cgroups';
import { Container, shouldKillAllOnExit } from './container';
import type { Logger } from './log';
import { ExecProcess, InitProcess, type Process, type ProcessDeps, type ProcessStatus } from './process';
import { decodeRuncOptions, encodeShimMessage, type RuncOptions } from './protos';
import { type EventSink, TOPICS } from './publisher';
import type { Exit, Reaper } from './reaper';
import { Runc } from './runc';
import { ConsoleIO, resolveStdio, type StdioPaths } from './stdio';
import { timestampNow } from './time';
import { SHIM_VERSION } from './version';

export const TASK_SERVICE = 'containerd.task.v2.Task';
/** berth's own service beside the task API (proto/berth/shim/v1/log.proto in @berth/api). */
export const LOG_SERVICE = 'berth.shim.v1.Log';

export interface RuntimeDefaults {
  /** OCI runtime binary when the options name none. */
  binary: string;
  /** Runtime state root when the options name none; the namespace is appended. */
  root: string;
}

export interface TaskServiceOptions {
  /** The shim's namespace (-namespace); requests may name their own. */
  namespace: string;
  reaper: Reaper;
  events: EventSink;
  log: Logger;
  runtime: RuntimeDefaults;
  /** Called once the shim should exit (Shutdown with no containers left, or idle). */
  onShutdown: () => void;
  /** After the last container's Shutdown, linger this long for a new one (0: exit at once). */
  idleMs?: number;
  /** A shim that never gets a container (its daemon went away) exits after this long. */
  unusedMs?: number;
  /** How often running containers' cgroups are checked for OOM kills (0: only at exits). */
  oomPollMs?: number;
}

/** How long a place announced by `start` is held for its Create. */
const RESERVATION_MS = 30_000;
/** How long an exit waits for a terminal's last output to reach a client that reads slowly. */
const CONSOLE_DRAIN_MS = 2000;

const STATUS: Record<ProcessStatus, string> = {
  created: 'CREATED',
  running: 'RUNNING',
  paused: 'PAUSED',
  pausing: 'PAUSING',
  stopped: 'STOPPED',
  deleted: 'STOPPED',
};

export class TaskService {
  readonly containers = new Map<string, Container>();
  /** Failpoints of each container, from its spec's annotations (empty for most). */
  private readonly failpoints = new Map<string, Failpoints>();
  /** Container ids announced by `start` (Connect) that have not been created yet. */
  private readonly reservations = new Map<string, NodeJS.Timeout>();
  /** Ids whose Create is running. */
  private readonly creating = new Set<string>();
  private idleTimer: NodeJS.Timeout | undefined;
  private oomTimer: NodeJS.Timeout | undefined;
  private shuttingDown = false;

  constructor(private readonly opts: TaskServiceOptions) {
    this.armIdle(opts.unusedMs ?? 60_000);
  }

  get closing(): boolean {
    return this.shuttingDown;
  }

  handlers(): ServiceHandlers {
    const handlers: Record<string, (r: any, ctx: TtrpcCallContext) => unknown> = {
      State: (r: any, ctx: TtrpcCallContext) => this.state(r, ctx),
      Create: (r: any, ctx: TtrpcCallContext) => this.create(r, ctx),
      Start: (r: any) => this.start(r),
      Delete: (r: any) => this.delete(r),
      Pids: (r: any) => this.pids(r),
      Pause: (r: any) => this.pause(r),
      Resume: (r: any) => this.resume(r),
      Checkpoint: () => {
        throw new NotImplementedError('checkpoint is not supported by this shim');
      },
      Kill: (r: any) => this.kill(r),
      Exec: (r: any) => this.exec(r),
      ResizePty: (r: any) => this.resizePty(r),
      CloseIO: (r: any) => this.closeIO(r),
      Update: (r: any) => this.update(r),
      Wait: (r: any) => this.wait(r),
      Stats: (r: any) => this.stats(r),
      Connect: (r: any) => this.connect(r),
      Shutdown: (r: any) => this.shutdown(r),
    };
    return Object.fromEntries(
      Object.entries(handlers).map(([method, handler]) => [
        method,
        (r: any, ctx: TtrpcCallContext) => {
          const fp = this.failpointAt(method, r);
          return fp === undefined ? handler(r, ctx) : fp.then(() => handler(r, ctx));
        },
      ]),
    ) as ServiceHandlers;
  }

  /** berth.shim.v1.Log: what the CRI needs of a log this shim writes (stdio URI cri-log://). */
  logHandlers(): ServiceHandlers {
    return { Reopen: (r: wire.berthShim.ReopenLogRequest) => this.reopenLog(r) };
  }

  /**
   * The kubelet rotated the container's log (renamed the file): lines from now on go to a new
   * file at the path. FailedPrecondition when the init process does not run or its output
   * does not go to a CRI log.
   */
  reopenLog(r: wire.berthShim.ReopenLogRequest): Record<string, never> {
    const c = this.container(r.id);
    const init = c.init;
    if (init.status !== 'running' && init.status !== 'paused')
      throw new FailedPreconditionError(`container ${r.id} is not running`);
    if (!init.io?.reopenLog())
      throw new FailedPreconditionError(
        `container ${r.id}: its output does not go to a CRI log (stdout ${JSON.stringify(init.stdio.stdout)})`,
      );
    return {};
  }

  /**
   * The failpoint a Task API call passes first, if any (see @berth/api's failpoint): the
   * container's `io.containerd.runtime.v2.shim.failpoint.<Method>` annotation, read from its
   * bundle when it is created, as containerd's failpoint shim does, or the process's
   * `shim.<Method>` from BERTH_FAILPOINTS.
   */
  private failpointAt(
    method: string,
    r: { id?: string; bundle?: string } | undefined,
  ): Promise<void> | undefined {
    const id = r?.id ?? '';
    if (method === 'Create' && r?.bundle) this.failpoints.set(id, failpointsOfBundle(r.bundle));
    return this.failpoints.get(id)?.at(method) ?? failpoint(`shim.${method}`);
  }

  private container(id: string): Container {
    const c = this.containers.get(id);
    if (c === undefined) throw new NotFoundError(`container ${id}: container not created`);
    return c;
  }

  private publish(c: Container, topic: string, typeName: string, event: Record<string, unknown>): void {
    this.opts.events.publish(c.namespace, topic, typeName, event);
  }

  // --- lifecycle of the shim itself

  private armIdle(ms: number): void {
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (!this.idle()) return;
    if (ms <= 0) {
      this.beginShutdown();
      return;
    }
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      if (this.idle()) this.beginShutdown();
    }, ms);
  }

  private idle(): boolean {
    return this.containers.size === 0 && this.reservations.size === 0 && this.creating.size === 0;
  }

  private beginShutdown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    clearInterval(this.oomTimer);
    this.opts.onShutdown();
  }

  // --- Task API

  async create(r: wire.shim.CreateTaskRequest, ctx: TtrpcCallContext): Promise<wire.shim.CreateTaskResponse> {
    if (this.shuttingDown) throw new UnavailableError('shim is shutting down');
    const id: string = r.id;
    validateIdentifier(id);
    if (this.containers.has(id) || this.creating.has(id))
      throw new FailedPreconditionError(`container ${id}: already exists`);
    if (!isAbsolute(r.bundle ?? ''))
      throw new InvalidArgumentError(`bundle ${JSON.stringify(r.bundle)}: not an absolute path`);
    if (r.checkpoint)
      throw new NotImplementedError('restore from a checkpoint is not supported by this shim');
    const namespace = ctx.namespace || this.opts.namespace;
    const options = decodeRuncOptions(r.options);
    this.creating.add(id);
    clearTimeout(this.reservations.get(id));
    this.reservations.delete(id);
    clearTimeout(this.idleTimer);
    try {
      return await this.createContainer(id, namespace, r, options);
    } finally {
      this.creating.delete(id);
      this.armIdle(this.opts.unusedMs ?? 60_000);
    }
  }

  private async createContainer(
    id: string,
    namespace: string,
    r: any,
    options: RuncOptions,
  ): Promise<{ pid: number }> {
    const bundle: string = r.bundle;
    const stdio: StdioPaths = resolveStdio({
      stdin: r.stdin ?? '',
      stdout: r.stdout ?? '',
      stderr: r.stderr ?? '',
      terminal: r.terminal === true,
    });
    const mounts: Mount[] = (r.rootfs ?? []).map((m: any) => ({
      type: m.type,
      source: m.source,
      target: m.target || undefined,
      options: m.options ?? [],
    }));
    const rootfs = mounts.length > 0 ? join(bundle, 'rootfs') : '';
    const binary = options.binaryName || this.opts.runtime.binary;
    const runtimeRoot = options.root || this.opts.runtime.root;
    // What `delete` needs when this shim is gone (containerd's runc shim keeps the same files).
    writeFileSync(
      join(bundle, 'options.json'),
      JSON.stringify({ ...options, binary_name: binary, root: runtimeRoot }),
      { mode: 0o600 },
    );
    writeFileSync(join(bundle, 'runtime'), binary, { mode: 0o600 });
    const runc = new Runc(this.opts.reaper, {
      binary,
      root: join(runtimeRoot, namespace),
      log: join(bundle, 'log.json'),
      systemdCgroup: options.systemdCgroup,
    });
    const deps: ProcessDeps = {
      runc,
      reaper: this.opts.reaper,
      log: this.opts.log,
      ioOwner: { uid: options.ioUid, gid: options.ioGid },
    };
    const init = new InitProcess(id, stdio, deps, {
      bundle,
      rootfs,
      noPivotRoot: options.noPivotRoot,
      noNewKeyring: options.noNewKeyring,
    });
    const container = new Container(id, bundle, namespace, runc, init);
    if (rootfs !== '') {
      mkdirSync(rootfs, { recursive: true, mode: 0o711 });
      try {
        await mountAll(mounts, rootfs);
      } catch (err) {
        throw new Error(`failed to mount rootfs component: ${(err as Error).message}`, { cause: err });
      }
    }
    init.starting = true;
    try {
      await init.create((exit) => this.onExit(container, init, exit));
    } catch (err) {
      init.starting = false;
      if (rootfs !== '') await unmountAll(rootfs).catch(() => {});
      throw err;
    }
    container.cgroup = Cgroup.ofPid(init.pid);
    container.oomKills = container.cgroup?.oomKills() ?? 0;
    this.containers.set(id, container);
    this.publish(container, TOPICS.create, 'TaskCreate', {
      containerId: id,
      bundle,
      rootfs: r.rootfs ?? [],
      io: {
        stdin: r.stdin ?? '',
        stdout: r.stdout ?? '',
        stderr: r.stderr ?? '',
        terminal: r.terminal === true,
      },
      checkpoint: r.checkpoint ?? '',
      pid: init.pid,
    });
    this.settleStart(container, init);
    this.watchOom();
    return { pid: init.pid };
  }

  /** Ends a start phase: an exit that came meanwhile is handled now, after the start's event. */
  private settleStart(c: Container, p: Process): void {
    p.starting = false;
    const pending = p.pendingExit;
    p.pendingExit = undefined;
    if (pending !== undefined) void this.onExit(c, p, pending);
  }

  async start(r: wire.shim.StartRequest): Promise<wire.shim.StartResponse> {
    const c = this.container(r.id);
    const p = c.process(r.execId ?? '');
    p.starting = true;
    try {
      if (p instanceof ExecProcess) {
        try {
          await p.start((exit) => this.onExit(c, p, exit));
        } catch (err) {
          // The exec never ran: anyone waiting for it learns so.
          p.setExited({ status: 255, at: timestampNow() });
          throw err;
        }
        this.publish(c, TOPICS.execStarted, 'TaskExecStarted', {
          containerId: c.id,
          execId: p.id,
          pid: p.pid,
        });
      } else {
        await (p as InitProcess).start();
        this.publish(c, TOPICS.start, 'TaskStart', { containerId: c.id, pid: p.pid });
      }
    } finally {
      this.settleStart(c, p);
    }
    return { pid: p.pid };
  }

  /** An exit the reaper reported for a process of container c. */
  async onExit(c: Container, p: Process, exit: Exit): Promise<void> {
    if (p.starting) {
      p.pendingExit = exit;
      return;
    }
    if (p.hasExited) return;
    const { log } = this.opts;
    if (p === c.init) {
      if (p.status === 'paused' || p.status === 'pausing') {
        await c.runc.resume(c.id).catch((err) => log.warn('resuming exited container', { error: err }));
      }
      if (shouldKillAllOnExit(c.bundle)) {
        await c.runc
          .kill(c.id, 9, true)
          .catch((err) => log.debug('kill all after init exit', { error: err }));
      }
    }
    this.checkOom(c);
    if (p.io instanceof ConsoleIO) {
      // A terminal's last output is still in the pty: it reaches the FIFO before the exit
      // is known, as containerd's shim copies it before the client learns of the exit.
      p.io.processExited();
      await p.io.wait(CONSOLE_DRAIN_MS);
    }
    if (!p.setExited(exit)) return;
    if (p.status === 'deleted' && p === c.init) return;
    this.publish(c, TOPICS.exit, 'TaskExit', {
      containerId: c.id,
      id: p.id,
      pid: exit.pid,
      exitStatus: exit.status,
      exitedAt: exit.at,
    });
  }

  async delete(r: wire.shim.DeleteRequest): Promise<wire.shim.DeleteResponse> {
    const c = this.container(r.id);
    const execId = r.execId ?? '';
    const p = c.process(execId);
    await (p as InitProcess | ExecProcess).delete();
    if (execId !== '') {
      c.execs.delete(execId);
    } else {
      this.containers.delete(c.id);
      this.failpoints.delete(c.id);
      this.opts.reaper.unwatch(p.pid);
      this.publish(c, TOPICS.delete, 'TaskDelete', {
        containerId: c.id,
        pid: p.pid,
        exitStatus: p.exitStatus,
        exitedAt: p.exitedAt,
        id: c.id,
      });
    }
    return { pid: p.pid, exitStatus: p.exitStatus, exitedAt: p.exitedAt ?? undefined };
  }

  async exec(r: wire.shim.ExecProcessRequest): Promise<object> {
    const c = this.container(r.id);
    const execId: string = r.execId ?? '';
    validateIdentifier(execId);
    const release = c.reserveExec(execId);
    try {
      const status = c.init.status;
      if (status !== 'created' && status !== 'running') {
        throw new FailedPreconditionError(
          `cannot exec in a ${status === 'deleted' ? 'deleted' : status} state`,
        );
      }
      if (!r.spec?.value) throw new InvalidArgumentError(`exec ${execId}: no process spec`);
      let spec: Record<string, unknown>;
      try {
        spec = JSON.parse(Buffer.from(r.spec.value).toString()) as Record<string, unknown>;
      } catch (err) {
        throw new InvalidArgumentError(`exec ${execId}: process spec: ${(err as Error).message}`);
      }
      spec.terminal = r.terminal === true;
      const stdio = resolveStdio({
        stdin: r.stdin ?? '',
        stdout: r.stdout ?? '',
        stderr: r.stderr ?? '',
        terminal: r.terminal === true,
      });
      const deps: ProcessDeps = { runc: c.runc, reaper: this.opts.reaper, log: this.opts.log };
      c.execs.set(execId, new ExecProcess(execId, stdio, deps, c.init, spec));
    } finally {
      release();
    }
    this.publish(c, TOPICS.execAdded, 'TaskExecAdded', { containerId: c.id, execId });
    return {};
  }

  state(r: wire.shim.StateRequest, _ctx?: TtrpcCallContext): object {
    const c = this.container(r.id);
    const execId = r.execId ?? '';
    const p = c.process(execId);
    const status = p instanceof ExecProcess ? p.reportedStatus : p.status;
    return {
      id: p.id,
      bundle: c.bundle,
      pid: p.pid,
      status: STATUS[status],
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exitStatus: p.exitStatus,
      exitedAt: p.exitedAt,
      execId,
    };
  }

  async pids(r: wire.shim.PidsRequest): Promise<object> {
    const c = this.container(r.id);
    const pids = await c.runc.ps(c.id);
    const byPid = new Map<number, string>();
    for (const e of c.execs.values()) if (e.pid > 0) byPid.set(e.pid, e.id);
    return {
      processes: pids.map((pid) => {
        const execId = byPid.get(pid);
        return {
          pid,
          info:
            execId === undefined
              ? null
              : {
                  typeUrl: 'containerd.runc.v1.ProcessDetails',
                  value: encodeShimMessage('containerd.runc.v1.ProcessDetails', { execId }),
                },
        };
      }),
    };
  }

  async pause(r: wire.shim.PauseRequest): Promise<object> {
    const c = this.container(r.id);
    await c.init.pause();
    this.publish(c, TOPICS.paused, 'TaskPaused', { containerId: c.id });
    return {};
  }

  async resume(r: wire.shim.ResumeRequest): Promise<object> {
    const c = this.container(r.id);
    await c.init.resume();
    this.publish(c, TOPICS.resumed, 'TaskResumed', { containerId: c.id });
    return {};
  }

  async kill(r: wire.shim.KillRequest): Promise<object> {
    const c = this.container(r.id);
    const p = c.process(r.execId ?? '');
    if (p instanceof ExecProcess) await p.kill(r.signal);
    else await (p as InitProcess).kill(r.signal, r.all === true);
    return {};
  }

  resizePty(r: wire.shim.ResizePtyRequest): object {
    this.container(r.id)
      .process(r.execId ?? '')
      .resize(r.width, r.height);
    return {};
  }

  closeIO(r: wire.shim.CloseIORequest): object {
    const p = this.container(r.id).process(r.execId ?? '');
    if (r.stdin) p.closeStdin();
    return {};
  }

  async update(r: wire.shim.UpdateTaskRequest): Promise<object> {
    const c = this.container(r.id);
    if (!r.resources?.value) throw new InvalidArgumentError(`update ${r.id}: no resources`);
    const json = Buffer.from(r.resources.value).toString();
    try {
      JSON.parse(json);
    } catch (err) {
      throw new InvalidArgumentError(`update ${r.id}: resources: ${(err as Error).message}`);
    }
    await c.init.update(json);
    return {};
  }

  async wait(r: wire.shim.WaitRequest): Promise<object> {
    const p = this.container(r.id).process(r.execId ?? '');
    await p.exited;
    return { exitStatus: p.exitStatus, exitedAt: p.exitedAt };
  }

  stats(r: wire.shim.StatsRequest): object {
    const c = this.container(r.id);
    if (c.cgroup === undefined || !c.cgroup.exists())
      throw new NotFoundError(`container ${r.id}: cgroup does not exist`);
    const { typeName, metrics } = c.cgroup.stats();
    return { stats: { typeUrl: typeName, value: encodeShimMessage(typeName, metrics) } };
  }

  /**
   * Connect reports the shim's and the task's pid. For an id this shim does not know it
   * is `start` asking for a place in a running shim: the id is held until Create comes.
   */
  connect(r: wire.shim.ConnectRequest): object {
    const c = this.containers.get(r.id);
    if (c === undefined && !this.creating.has(r.id)) {
      if (this.shuttingDown) throw new UnavailableError('shim is shutting down');
      clearTimeout(this.idleTimer);
      clearTimeout(this.reservations.get(r.id));
      this.reservations.set(
        r.id,
        setTimeout(() => {
          this.reservations.delete(r.id);
          this.armIdle(0);
        }, RESERVATION_MS),
      );
    }
    return { shimPid: process.pid, taskPid: c?.init.pid ?? 0, version: SHIM_VERSION };
  }

  /** Exits once no container is left (after the idle linger, if one is configured). */
  shutdown(r: wire.shim.ShutdownRequest): object {
    // The daemon gave up on a container it announced and never created.
    const held = this.reservations.get(r.id);
    if (held !== undefined) {
      clearTimeout(held);
      this.reservations.delete(r.id);
    }
    if (this.idle()) this.armIdle(this.opts.idleMs ?? 0);
    return {};
  }

  // --- OOM kills

  private checkOom(c: Container): void {
    const cg = c.cgroup;
    if (cg === undefined) return;
    const kills = cg.oomKills();
    if (kills > c.oomKills) {
      c.oomKills = kills;
      this.publish(c, TOPICS.oom, 'TaskOOM', { containerId: c.id });
    }
  }

  private watchOom(): void {
    const every = this.opts.oomPollMs ?? 1000;
    if (every <= 0 || this.oomTimer !== undefined) return;
    this.oomTimer = setInterval(() => {
      let running = 0;
      for (const c of this.containers.values()) {
        if (c.init.hasExited) continue;
        running++;
        this.checkOom(c);
      }
      if (running === 0) {
        clearInterval(this.oomTimer);
        this.oomTimer = undefined;
      }
    }, every);
    this.oomTimer.unref();
  }
}

/** The failpoints a bundle's spec sets with containerd's shim annotations. */
function failpointsOfBundle(bundle: string): Failpoints {
  const fps = new Failpoints();
  let annotations: Record<string, string> | undefined;
  try {
    annotations = (
      JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
        annotations?: Record<string, string>;
      }
    ).annotations;
  } catch {
    return fps; // no readable spec: Create itself says so
  }
  for (const [key, terms] of Object.entries(annotations ?? {})) {
    if (key.startsWith(SHIM_FAILPOINT_ANNOTATION_PREFIX))
      fps.set(key.slice(SHIM_FAILPOINT_ANNOTATION_PREFIX.length), terms);
  }
  return fps;
}
