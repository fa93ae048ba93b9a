import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { cp, mkdir, stat } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable, Writable } from 'node:stream';
import {
  type Container,
  type Context,
  CRI_LOG_SCHEME,
  CriLogFile,
  criLogUri,
  DeadlineExceededError,
  FailedPreconditionError,
  fromTimestamp,
  InvalidArgumentError,
  isNotFound,
  type Mount,
  preciseNow,
  removeTree,
  type wire,
} from '@berth/api';
import {
  type CopyOptions,
  copyIo,
  fifoSetOf,
  newFifoSet,
  oci,
  type ProcessIo,
  removeFifoSet,
  withReadonlyRootfs,
} from '@berth/client';
import { BERTH_RUNTIME_TYPE, passedPodAnnotations } from '../config';
import { type ContainerRecord, containerName, type SandboxRecord } from '../records';
import { goJson } from '../sandbox/info';
import type { CriService } from '../service';
import { type AttachIo, OutputFanout } from './attach';
import { CappedBuffer } from './log';
import { LogFollower } from './log-follow';
import { containerSpec, imageVolumeMounts, linuxResources, sandboxMounts, withLinuxResources } from './spec';
import { readStatus, writeStatus } from './status';

export const KIND_LABEL = 'io.cri-containerd.kind';
export const METADATA_EXTENSION = 'io.cri-containerd.container.metadata';
/** berth's own type for the JSON metadata it keeps in the container record. */
export const METADATA_TYPE_URL = 'berth.dev/cri/v1/ContainerMetadata';
const PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
const RESOURCES_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';
/** ExecSync keeps this much of each stream (containerd's maxExecSyncSize). */
export const EXEC_SYNC_MAX_OUTPUT = 16 * 1024 * 1024;
/** Exit code and reason of a container whose task vanished while the daemon was away (containerd's). */
const UNKNOWN_EXIT_CODE = 255;
const START_ERROR_EXIT_CODE = 128;
// How long output may keep arriving after a process exited before its streams are cut.
const IO_DRAIN_MS = 2000;

type Metadata = Omit<
  ContainerRecord,
  'state' | 'startedAt' | 'finishedAt' | 'exitCode' | 'reason' | 'message' | 'pid'
>;

/** What a container has in this process only: its log copying, its exit watcher. */
interface Live {
  io?: ProcessIo;
  log?: CriLogFile;
  stdinHold?: PassThrough;
  /** Output for Attach: fed by the FIFO copy, or read back from the log berth's shim writes. */
  output?: OutputFanout | LogFollower;
  exited?: Promise<void>;
  /**
   * The task made ahead of StartContainer (see `precreate`): settles, never rejects, with
   * whether a task now exists and the error a start must answer when making it failed.
   */
  precreate?: Promise<Precreated>;
  /** berth's shim writes the log (stdio URI cri-log://); berthd holds stdin only. */
  shimLog?: boolean;
  starting: boolean;
  removing: boolean;
  oom: boolean;
}

/** The outcome of making a container's task ahead of its start. */
interface Precreated {
  created: boolean;
  error?: Error;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms).unref());

function nowNanos(): number {
  return Number(preciseNow().toNanos());
}

/** A signal as an image's StopSignal spells it: SIGTERM, TERM, 15, SIGRTMIN+3. */
export function parseSignal(text: string): number {
  const t = text.trim().toUpperCase();
  if (/^\d+$/.test(t)) return Number(t);
  const name = t.startsWith('SIG') ? t : `SIG${t}`;
  const rt = /^SIGRTM(IN|AX)([+-]\d+)?$/.exec(name);
  if (rt) return (rt[1] === 'IN' ? 34 : 64) + Number(rt[2] ?? 0);
  const n = (osConstants.signals as Record<string, number>)[name];
  if (n === undefined) throw new InvalidArgumentError(`invalid stop signal "${text}"`);
  return n;
}

const discard = () =>
  new Writable({
    write(_c, _e, cb) {
      cb();
    },
  });

/** An exec process ContainerManager.startExec started. */
export interface ExecProcess {
  ref: { containerId: string; execId: string };
  /** Its FIFOs' copy (closeStdin() once the caller's stdin ended, then Tasks.CloseIO). */
  io: ProcessIo;
  /** The task service's Wait for it. */
  exited: Promise<wire.tasks.WaitResponse>;
  /** Resolves once its output reached the caller's streams (at most IO_DRAIN_MS after the exit). */
  drained(): Promise<void>;
  /** Deletes it in the shim and removes its FIFOs, in the background: call once done with it. */
  release(): void;
}

/** Containers of pods: OCI specs from CRI configs, run through the daemon's task service. */
export class ContainerManager {
  private readonly live = new Map<string, Live>();
  private readonly abort = new AbortController();
  private oomLoop?: Promise<void>;

  constructor(private readonly cri: CriService) {
    // Every running container's exit watch listens on this signal while it runs: no leak past
    // Node's default of 10, only many containers.
    setMaxListeners(0, this.abort.signal);
  }

  private get deps() {
    return this.cri.deps;
  }

  /** The Context of work that outlives a call (exit watchers): k8s.io, ended by close(). */
  private bg(): Context {
    return this.cri.ctx({ signal: this.abort.signal });
  }

  private rootDir(id: string): string {
    return join(this.deps.root, 'containers', id);
  }

  private stateDir(id: string): string {
    return join(this.deps.state, 'containers', id);
  }

  private liveOf(id: string): Live {
    let l = this.live.get(id);
    if (!l) {
      l = { starting: false, removing: false, oom: false };
      this.live.set(id, l);
    }
    return l;
  }

  private persist(rec: ContainerRecord): Promise<void> {
    return writeStatus(this.rootDir(rec.id), rec);
  }

  /** Reloads the records of an earlier run (after the sandboxes'), called once at start. */
  async recover(ctx: Context): Promise<void> {
    this.watchOom();
    const records = await this.deps.containers.list(ctx, [`labels."${KIND_LABEL}"==container`]);
    for (const c of records) {
      try {
        await this.recoverOne(ctx, c);
      } catch (e) {
        this.deps.log.with({ id: c.id, error: (e as Error).message }).error('recovering a container failed');
      }
    }
  }

  private async recoverOne(ctx: Context, c: Container): Promise<void> {
    const ext = c.extensions[METADATA_EXTENSION];
    if (!ext) return;
    const meta = JSON.parse(ext.value.toString()) as Metadata;
    const status = await readStatus(this.rootDir(c.id));
    const rec: ContainerRecord = {
      ...meta,
      state: status?.state ?? 'CONTAINER_UNKNOWN',
      startedAt: status?.startedAt ?? 0,
      finishedAt: status?.finishedAt ?? 0,
      exitCode: status?.exitCode ?? 0,
      reason: status?.reason ?? '',
      message: status?.message ?? '',
      pid: status?.pid ?? 0,
    };
    this.cri.containerNames.reserve(rec.name, rec.id);
    this.cri.containers.add(rec);
    let task: wire.taskTypes.Process | undefined;
    try {
      task = (await this.deps.tasks.get(ctx, { containerId: rec.id, execId: '' })).process;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (rec.state === 'CONTAINER_RUNNING' || rec.state === 'CONTAINER_UNKNOWN') {
      if (task && (task.status === 'RUNNING' || task.status === 'PAUSED')) {
        rec.state = 'CONTAINER_RUNNING';
        rec.pid = task.pid;
        if (isShimLog(task.stdout)) {
          // The shim kept writing the log all along: only stdin is ours again (no second writer).
          this.attachShimLog(rec, { ...fifoSetOf(task), stdout: '', stderr: '' });
        } else {
          // The shim kept writing into the FIFOs (or waits on them): read them again into the log.
          this.attachIo(rec, fifoSetOf(task));
        }
        this.watchExit(rec);
        return;
      }
      if (task) {
        await this.exited(rec, task.exitStatus, Number(fromTimestamp(task.exitedAt).toNanos()));
        return;
      }
      rec.state = 'CONTAINER_EXITED';
      rec.exitCode = UNKNOWN_EXIT_CODE;
      rec.reason = 'Unknown';
      rec.finishedAt = nowNanos();
      rec.pid = 0;
      await this.persist(rec);
      return;
    }
    if (task) {
      // A task made ahead of a start (or left from a start the daemon did not finish): its
      // FIFO readers died with the daemon, so it goes; the container is still only created
      // and its start makes the task anew.
      await this.deleteTask(ctx, rec.id, true);
    }
  }

  /** A pod's files and namespaces as the container needs them; FailedPrecondition when it is not ready. */
  private readySandbox(id: string): SandboxRecord {
    const sandbox = this.cri.sandboxes.get(id);
    if (sandbox.state !== 'SANDBOX_READY' || !sandbox.pid)
      throw new FailedPreconditionError(`sandbox container "${sandbox.id}" is not running`);
    return sandbox;
  }

  async create(
    ctx: Context,
    req: wire.cri.CreateContainerRequest,
  ): Promise<wire.cri.CreateContainerResponse> {
    const config = req.config;
    if (!config?.metadata) throw new InvalidArgumentError('container config must include metadata');
    if (!req.podSandboxId) throw new InvalidArgumentError('pod sandbox id must not be empty');
    const sandbox = this.readySandbox(req.podSandboxId);
    const sandboxConfig = req.sandboxConfig?.metadata ? req.sandboxConfig : sandbox.config;
    const imageRefAsked = config.image?.image ?? '';
    if (!imageRefAsked) throw new InvalidArgumentError('container config must name an image');
    const id = randomBytes(32).toString('hex');
    const name = containerName(config.metadata, sandboxConfig.metadata!);
    this.cri.containerNames.reserve(name, id);
    const snapshotter = this.deps.snapshotter(this.cri.config.snapshotter);
    const undo: (() => Promise<unknown>)[] = [async () => this.cri.containerNames.release(name)];
    try {
      const image = await this.cri.images.resolve(ctx, imageRefAsked);
      const imageConfig = image.config.config ?? {};
      const mounts: Mount[] = await snapshotter.prepare(ctx, id, image.chainId, {
        labels: { 'containerd.io/gc.root': preciseNow().toISOString() },
      });
      undo.push(() => snapshotter.remove(ctx, id).catch(() => {}));
      let targetPid: number | undefined;
      const ns = config.linux?.securityContext?.namespaceOptions;
      if (ns?.pid === 'TARGET') {
        const target = this.cri.containers.get(ns.targetId);
        if (target.state !== 'CONTAINER_RUNNING' || !target.pid)
          throw new FailedPreconditionError(`target container "${ns.targetId}" is not running`);
        targetPid = target.pid;
      }
      // The image's volumes start with what the image holds at their paths (containerd's WithVolumes).
      const volumes = imageVolumeMounts(config, imageConfig.Volumes, this.rootDir(id), () =>
        randomBytes(32).toString('hex'),
      );
      const input = {
        id,
        sandboxId: sandbox.id,
        sandboxPid: sandbox.pid,
        targetPid,
        config,
        sandboxConfig,
        podAnnotations: passedPodAnnotations(
          this.cri.config.runtimes.get(sandbox.runtimeHandler || this.cri.config.defaultRuntimeName),
          sandboxConfig.annotations,
        ),
        image: imageConfig,
        imageName: image.record.name,
        extraMounts: [...sandboxMounts(config, sandbox), ...volumes],
        restrictOomScoreAdj: this.cri.config.restrictOomScoreAdj,
        disableCgroup: this.cri.config.disableCgroup,
      };
      undo.push(() => removeTree(this.rootDir(id)));
      const spec =
        mounts.length > 0
          ? await withReadonlyRootfs(mounts, async (dir) => {
              await copyVolumeContents(dir, volumes);
              return containerSpec({ ...input, rootfs: dir });
            })
          : await containerSpec(input);
      const logDir = sandboxConfig.logDirectory ?? '';
      const meta: Metadata = {
        id,
        sandboxId: sandbox.id,
        name,
        config,
        imageId: image.id,
        imageRef: image.id,
        imageName: image.record.name,
        stopSignal: imageConfig.StopSignal ?? '',
        logPath: logDir && config.logPath ? join(logDir, config.logPath) : '',
        createdAt: nowNanos(),
      };
      const labels: Record<string, string> = {
        ...(imageConfig.Labels ?? {}),
        ...(config.labels ?? {}),
        [KIND_LABEL]: 'container',
      };
      await this.deps.containers.create(ctx, {
        id,
        labels,
        image: image.record.name,
        runtime: await this.sandboxRuntime(ctx, sandbox),
        spec: oci.specToAny(spec),
        snapshotter: this.cri.config.snapshotter,
        snapshotKey: id,
        extensions: { [METADATA_EXTENSION]: metadataAny(meta) },
        sandbox: '',
      });
      undo.push(() => this.deps.containers.delete(ctx, id).catch(() => {}));
      // The record now holds the snapshot for the garbage collector.
      await snapshotter
        .update(ctx, { name: id, labels: {} }, ['labels.containerd.io/gc.root'])
        .catch(() => {});
      const rec: ContainerRecord = {
        ...meta,
        state: 'CONTAINER_CREATED',
        startedAt: 0,
        finishedAt: 0,
        exitCode: 0,
        reason: '',
        message: '',
        pid: 0,
      };
      await this.persist(rec);
      this.cri.containers.add(rec);
      this.cri.events.emit(id, rec.sandboxId, 'CONTAINER_CREATED_EVENT');
      this.precreate(rec);
      return { containerId: id };
    } catch (e) {
      for (const u of undo.reverse()) await u().catch(() => {});
      throw e;
    }
  }

  /** The pod's runtime (its containerd record's), so a pod's containers run with its handler. */
  private async sandboxRuntime(ctx: Context, sandbox: SandboxRecord): Promise<Container['runtime']> {
    try {
      return (await this.deps.containers.get(ctx, sandbox.id)).runtime;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    const handler =
      this.cri.config.runtimes.get(sandbox.runtimeHandler || this.cri.config.defaultRuntimeName) ??
      this.cri.config.runtimes.get(this.cri.config.defaultRuntimeName);
    return { name: handler?.type ?? BERTH_RUNTIME_TYPE };
  }

  /** Reads the process's FIFOs into the container's log file (output is dropped when it has none). */
  private attachIo(rec: ContainerRecord, fifos: ReturnType<typeof fifoSetOf>): void {
    const live = this.liveOf(rec.id);
    let stdout: Writable = discard();
    let stderr: Writable = discard();
    if (rec.logPath) {
      const log = new CriLogFile({ path: rec.logPath, maxLineSize: this.cri.config.maxContainerLogLineSize });
      live.log = log;
      stdout = log.stream('stdout');
      stderr = log.stream('stderr');
    }
    const output = new OutputFanout();
    live.output = output;
    stdout = output.tee('stdout', stdout);
    stderr = output.tee('stderr', stderr);
    // A process reading stdin sees EOF only once nobody holds the FIFO for writing: we do, as containerd.
    if (fifos.stdin) live.stdinHold = new PassThrough();
    live.io = copyIo(fifos, { stdout, stderr, stdin: live.stdinHold });
  }

  /**
   * A container whose log berth's shim writes: berthd holds only its stdin FIFO (a process
   * reading stdin sees EOF only once nobody holds it for writing); Attach reads the log back.
   */
  private attachShimLog(rec: ContainerRecord, fifos: ReturnType<typeof fifoSetOf>): void {
    const live = this.liveOf(rec.id);
    live.shimLog = true;
    live.output = new LogFollower(rec.logPath);
    if (fifos.stdin) {
      live.stdinHold = new PassThrough();
      live.io = copyIo(fifos, { stdin: live.stdinHold });
    }
  }

  /** ReopenContainerLog: the kubelet renamed the log file; later lines go to a new one at the path. */
  async reopenLog(
    ctx: Context,
    req: wire.cri.ReopenContainerLogRequest,
  ): Promise<wire.cri.ReopenContainerLogResponse> {
    const rec = this.cri.containers.get(req.containerId);
    if (rec.state !== 'CONTAINER_RUNNING')
      throw new FailedPreconditionError(`container "${rec.id}" is not running`);
    const live = this.live.get(rec.id);
    if (live?.shimLog) await this.deps.reopenShimLog(ctx, rec.id);
    else live?.log?.reopen();
    return {};
  }

  /** What Attach reaches of a running container (FailedPrecondition when it is not running). */
  attachStreams(id: string): AttachIo {
    const rec = this.cri.containers.get(id);
    const live = this.live.get(rec.id);
    if (rec.state !== 'CONTAINER_RUNNING' || !live?.output)
      throw new FailedPreconditionError(`container "${rec.id}" is in ${stateName(rec.state)} state`);
    const output = live.output;
    const io = live.io;
    return {
      stdin: live.stdinHold,
      closeStdin: live.stdinHold
        ? async () => {
            live.stdinHold?.end();
            await io?.closeStdin();
            await this.deps.tasks.closeIO(this.bg(), { containerId: rec.id, execId: '', stdin: true });
          }
        : undefined,
      tty: rec.config.tty,
      subscribe: (onData, onEnd) => output.subscribe(onData, onEnd),
    };
  }

  /**
   * Makes the container's task (`runc create`: the shim, the bundle, the process waiting to
   * exec) in the background once CreateContainer has answered, so StartContainer is left
   * with `runc start` and the client's gap between the two calls hides the rest. The
   * container stays CREATED; a failure is kept for StartContainer to answer as its own.
   */
  private precreate(rec: ContainerRecord): void {
    const live = this.liveOf(rec.id);
    live.precreate = this.createTask(this.bg(), rec).then(
      (): Precreated => ({ created: true }),
      async (e: Error): Promise<Precreated> => {
        await this.closeIo(rec.id, false);
        return { created: false, error: e };
      },
    );
  }

  /**
   * Undoes a task made ahead of a start that will not use it (the pod stops, the spec
   * changes): the container stays CREATED and a later start makes its task itself.
   */
  private dropPrecreated(ctx: Context, id: string): Promise<void> {
    const live = this.live.get(id);
    const pre = live?.precreate;
    if (!live || !pre) return Promise.resolve();
    const dropped = pre.then(async (r): Promise<Precreated> => {
      if (r.created) {
        await this.deleteTask(ctx, id, true);
        await this.closeIo(id, true);
      }
      return { created: false };
    });
    live.precreate = dropped;
    return dropped.then(() => {});
  }

  /** The task of a CREATED container with its IO: FIFOs read into the log, or the shim's own log. */
  private async createTask(ctx: Context, rec: ContainerRecord): Promise<void> {
    const tty = rec.config.tty;
    // berth's shim writes the log itself, so it keeps growing while berthd is down;
    // containerd's shim only offers FIFOs, which berthd copies (as containerd does).
    const shimLog = rec.logPath !== '' && (await this.runtimeType(ctx, rec)) === BERTH_RUNTIME_TYPE;
    const fifos = await newFifoSet(join(this.stateDir(rec.id), 'io'), rec.id, {
      stdin: rec.config.stdin,
      stdout: !shimLog,
      stderr: !shimLog,
      terminal: tty,
    });
    if (shimLog) {
      const uri = criLogUri({ path: rec.logPath, maxLineSize: this.cri.config.maxContainerLogLineSize });
      fifos.stdout = uri;
      fifos.stderr = tty ? '' : uri;
      this.attachShimLog(rec, { ...fifos, stdout: '', stderr: '' });
    } else {
      this.attachIo(rec, fifos);
    }
    const mounts = await this.deps.snapshotter(this.cri.config.snapshotter).mounts(ctx, rec.id);
    await this.deps.tasks.create(ctx, {
      containerId: rec.id,
      rootfs: mounts.map((m) => ({
        type: m.type,
        source: m.source,
        target: m.target ?? '',
        options: m.options,
      })),
      stdin: fifos.stdin,
      stdout: fifos.stdout,
      stderr: fifos.stderr,
      terminal: tty,
      checkpoint: undefined,
      options: undefined,
      runtimePath: '',
    } as wire.tasks.CreateTaskRequest);
  }

  async start(ctx: Context, req: wire.cri.StartContainerRequest): Promise<wire.cri.StartContainerResponse> {
    const rec = this.cri.containers.get(req.containerId);
    const live = this.liveOf(rec.id);
    if (live.starting)
      throw new FailedPreconditionError(`container "${rec.id}" is already in starting state`);
    if (live.removing) throw new FailedPreconditionError(`container "${rec.id}" is in removing state`);
    if (rec.state !== 'CONTAINER_CREATED')
      throw new FailedPreconditionError(`container "${rec.id}" is in ${stateName(rec.state)} state`);
    live.starting = true;
    const pre = live.precreate;
    live.precreate = undefined;
    let taskCreated = false;
    try {
      const made: Precreated = pre ? await pre : { created: false };
      taskCreated = made.created;
      this.readySandbox(rec.sandboxId);
      // The error making the task ahead met is this call's, as if it had met it itself.
      if (made.error) throw made.error;
      if (!taskCreated) {
        await this.createTask(ctx, rec);
        taskCreated = true;
      }
      const { pid } = await this.deps.tasks.start(ctx, { containerId: rec.id, execId: '' });
      rec.pid = pid;
      rec.state = 'CONTAINER_RUNNING';
      rec.startedAt = nowNanos();
      await this.persist(rec);
      this.watchExit(rec);
      this.cri.events.emit(rec.id, rec.sandboxId, 'CONTAINER_STARTED_EVENT');
      return {};
    } catch (e) {
      if (taskCreated) await this.deleteTask(ctx, rec.id, true);
      await this.closeIo(rec.id, false);
      rec.pid = 0;
      rec.state = 'CONTAINER_EXITED';
      rec.finishedAt = nowNanos();
      rec.exitCode = START_ERROR_EXIT_CODE;
      rec.reason = 'StartError';
      rec.message = (e as Error).message;
      await this.persist(rec).catch(() => {});
      // CREATED to EXITED is a transition too (containerd 1.7 sends nothing here; the kubelet would wait for its relist).
      this.cri.events.emit(rec.id, rec.sandboxId, 'CONTAINER_STOPPED_EVENT');
      throw e;
    } finally {
      live.starting = false;
    }
  }

  /** The runtime type of the container's record (its pod's handler). */
  private async runtimeType(ctx: Context, rec: ContainerRecord): Promise<string> {
    return (await this.deps.containers.get(ctx, rec.id)).runtime.name;
  }

  private async deleteTask(ctx: Context, id: string, kill: boolean): Promise<void> {
    if (kill) {
      await this.deps.tasks.kill(ctx, { containerId: id, execId: '', signal: 9, all: true }).catch(() => {});
      await Promise.race([
        this.deps.tasks.wait(ctx, { containerId: id, execId: '' }).catch(() => {}),
        sleep(5000),
      ]);
    }
    await this.deps.tasks.delete(ctx, { containerId: id }).catch((e) => {
      if (!isNotFound(e))
        this.deps.log.with({ id, error: (e as Error).message }).warn('deleting a task failed');
    });
  }

  /** Waits for the task's exit (TaskService.wait) and records it. */
  private watchExit(rec: ContainerRecord): void {
    const live = this.liveOf(rec.id);
    const ctx = this.bg();
    live.exited = this.deps.tasks.wait(ctx, { containerId: rec.id, execId: '' }).then(
      (res) => this.exited(rec, res.exitStatus, Number(fromTimestamp(res.exitedAt).toNanos())),
      async (e) => {
        if (this.abort.signal.aborted) return;
        this.deps.log
          .with({ id: rec.id, error: (e as Error).message })
          .warn('waiting for a container failed');
        await this.exited(rec, UNKNOWN_EXIT_CODE, nowNanos(), 'Unknown');
      },
    );
  }

  /** The task exited: its output drained, the task deleted, the status EXITED with the reason. */
  private async exited(rec: ContainerRecord, code: number, at: number, reason?: string): Promise<void> {
    if (this.abort.signal.aborted) return;
    const ctx = this.bg();
    const live = this.liveOf(rec.id);
    await this.deps.tasks.delete(ctx, { containerId: rec.id }).catch((e) => {
      if (!isNotFound(e))
        this.deps.log.with({ id: rec.id, error: (e as Error).message }).warn('deleting a task failed');
    });
    if (live.io) await Promise.race([live.io.wait(), sleep(IO_DRAIN_MS)]);
    await this.closeIo(rec.id, true);
    const stopped = rec.state !== 'CONTAINER_EXITED';
    rec.state = 'CONTAINER_EXITED';
    rec.exitCode = code;
    rec.finishedAt = at || nowNanos();
    rec.pid = 0;
    rec.reason =
      reason ?? (live.oom || rec.reason === 'OOMKilled' ? 'OOMKilled' : code === 0 ? 'Completed' : 'Error');
    await this.persist(rec).catch((e) =>
      this.deps.log
        .with({ id: rec.id, error: (e as Error).message })
        .error('writing a container status failed'),
    );
    if (stopped && this.cri.containers.find(rec.id) === rec)
      this.cri.events.emit(rec.id, rec.sandboxId, 'CONTAINER_STOPPED_EVENT');
  }

  /** Stops reading the FIFOs; `remove` deletes them (they stay for a daemon that closes while a task runs). */
  private async closeIo(id: string, remove: boolean): Promise<void> {
    const live = this.live.get(id);
    if (!live) return;
    live.stdinHold?.end();
    if (live.io) {
      if (remove) await live.io.close().catch(() => {});
      else live.io.cancel();
    }
    live.log?.close();
    await live.output?.end();
    live.output = undefined;
    live.io = undefined;
    live.log = undefined;
    live.stdinHold = undefined;
    live.shimLog = false;
  }

  /** OOM events of the daemon's shims mark the container, so its exit reads OOMKilled. */
  private watchOom(): void {
    if (this.oomLoop) return;
    const sub = this.deps.events.subscribe(['topic=="/tasks/oom"'], this.abort.signal);
    this.oomLoop = (async () => {
      try {
        for await (const ev of sub) {
          if (ev.namespace !== 'k8s.io') continue;
          const id = String(ev.decoded?.containerId ?? ev.decoded?.container_id ?? '');
          const rec = id ? this.cri.containers.find(id) : undefined;
          if (!rec || rec.id !== id) continue;
          this.liveOf(id).oom = true;
          rec.reason = 'OOMKilled';
          // The event may come after the exit was recorded (containerd sets the reason whenever it comes).
          if (rec.state === 'CONTAINER_EXITED') await this.persist(rec).catch(() => {});
        }
      } catch {
        // The exchange closed with the daemon.
      }
    })();
  }

  async stop(ctx: Context, req: wire.cri.StopContainerRequest): Promise<wire.cri.StopContainerResponse> {
    const rec = this.cri.containers.get(req.containerId);
    await this.stopContainer(ctx, rec, req.timeout);
    return {};
  }

  /** Stop signal, then SIGKILL after `timeout` seconds (at once when 0); nothing when not running. */
  private async stopContainer(ctx: Context, rec: ContainerRecord, timeout: number): Promise<void> {
    if (rec.state !== 'CONTAINER_RUNNING' && rec.state !== 'CONTAINER_UNKNOWN') return;
    const live = this.liveOf(rec.id);
    const kill = async (signal: number) => {
      try {
        await this.deps.tasks.kill(ctx, { containerId: rec.id, execId: '', signal, all: false });
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    };
    const exited = live.exited ?? Promise.resolve();
    if (timeout > 0) {
      await kill(parseSignal(rec.stopSignal || 'SIGTERM'));
      const done = await Promise.race([exited.then(() => true), sleep(timeout * 1000).then(() => false)]);
      if (done) return;
    }
    await kill(9);
    await exited;
  }

  async remove(
    ctx: Context,
    req: wire.cri.RemoveContainerRequest,
  ): Promise<wire.cri.RemoveContainerResponse> {
    const rec = this.cri.containers.find(req.containerId);
    // containerd answers OK for a container it does not know: removal is idempotent.
    if (!rec) return {};
    await this.removeContainer(ctx, rec);
    return {};
  }

  private async removeContainer(ctx: Context, rec: ContainerRecord): Promise<void> {
    const live = this.liveOf(rec.id);
    if (live.starting)
      throw new FailedPreconditionError(`container "${rec.id}" is in starting state, can't be removed`);
    if (live.removing)
      throw new FailedPreconditionError(`container "${rec.id}" is already in removing state`);
    // A running container is stopped first, at once (containerd's forced removal).
    await this.stopContainer(ctx, rec, 0);
    live.removing = true;
    try {
      // A task made ahead of a start that never came: its process waits in runc's init, killed here.
      const pre = live.precreate;
      live.precreate = undefined;
      if (pre && (await pre).created) await this.deleteTask(ctx, rec.id, true);
      await this.deps.tasks.delete(ctx, { containerId: rec.id }).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
      await this.closeIo(rec.id, true);
      await this.deps.containers.delete(ctx, rec.id).catch((e) => {
        if (!isNotFound(e)) throw e;
      });
      await this.deps
        .snapshotter(this.cri.config.snapshotter)
        .remove(ctx, rec.id)
        .catch((e) => {
          if (!isNotFound(e)) throw e;
        });
      await removeTree(this.rootDir(rec.id));
      await removeTree(this.stateDir(rec.id));
      this.cri.containers.delete(rec.id);
      this.cri.containerNames.release(rec.name);
      this.live.delete(rec.id);
      this.cri.events.emit(rec.id, rec.sandboxId, 'CONTAINER_DELETED_EVENT');
    } finally {
      live.removing = false;
    }
  }

  /** The pod's containers stopped at once (StopPodSandbox). */
  async stopAllInSandbox(ctx: Context, sandboxId: string): Promise<void> {
    const recs = this.cri.containers.list().filter((c) => c.sandboxId === sandboxId);
    // A task made ahead for a container not started would outlive the pod's namespaces.
    await Promise.all(
      recs.map((c) =>
        c.state === 'CONTAINER_CREATED' ? this.dropPrecreated(ctx, c.id) : this.stopContainer(ctx, c, 0),
      ),
    );
  }

  /** The pod's containers removed (RemovePodSandbox). */
  async removeAllInSandbox(ctx: Context, sandboxId: string): Promise<void> {
    for (const c of this.cri.containers.list().filter((r) => r.sandboxId === sandboxId))
      await this.removeContainer(ctx, c);
  }

  async status(
    ctx: Context,
    req: wire.cri.ContainerStatusRequest,
  ): Promise<wire.cri.ContainerStatusResponse> {
    const rec = this.cri.containers.get(req.containerId);
    let c: Container | undefined;
    try {
      c = await this.deps.containers.get(ctx, rec.id);
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    const spec = c?.spec ? (JSON.parse(c.spec.value.toString()) as oci.Spec) : undefined;
    const status: wire.cri.ContainerStatus = {
      id: rec.id,
      metadata: rec.config.metadata,
      state: rec.state,
      createdAt: rec.createdAt,
      startedAt: rec.startedAt,
      finishedAt: rec.finishedAt,
      exitCode: rec.exitCode,
      image: { image: rec.imageName, annotations: rec.config.image?.annotations ?? {} } as wire.cri.ImageSpec,
      imageRef: await this.imageRef(ctx, rec),
      reason: rec.reason,
      message: rec.message,
      labels: rec.config.labels ?? {},
      annotations: rec.config.annotations ?? {},
      mounts: rec.config.mounts ?? [],
      logPath: rec.logPath,
      resources: specResources(spec),
    };
    const info: Record<string, string> = {};
    if (req.verbose) {
      const live = this.live.get(rec.id);
      const sandbox = this.cri.sandboxes.find(rec.sandboxId);
      const handler = this.cri.config.runtimes.get(
        sandbox?.runtimeHandler || this.cri.config.defaultRuntimeName,
      );
      info.info = JSON.stringify({
        sandboxID: rec.sandboxId,
        pid: rec.pid,
        removing: live?.removing ?? false,
        snapshotKey: c?.snapshotKey ?? rec.id,
        snapshotter: c?.snapshotter ?? this.cri.config.snapshotter,
        runtimeType: c?.runtime.name ?? '',
        runtimeOptions: goOptions(handler?.options ?? {}),
        config: goJson(rec.config),
        runtimeSpec: spec ?? null,
      });
    }
    return { status, info };
  }

  /**
   * What ContainerStatus reports as image_ref: a `repo@digest` the image is known by (the
   * record a pull made for its digest), else the image id, as containerd's image store answers.
   */
  private async imageRef(ctx: Context, rec: ContainerRecord): Promise<string> {
    try {
      const image = await this.deps.images.get(ctx, rec.imageName);
      const same = await this.deps.images.list(ctx, [`target.digest==${image.target.digest}`]);
      const byDigest = same.map((i) => i.name).find((n) => n.includes('@'));
      if (byDigest) return byDigest;
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    return rec.imageId;
  }

  async list(_ctx: Context, req: wire.cri.ListContainersRequest): Promise<wire.cri.ListContainersResponse> {
    const f = req.filter;
    let recs = this.cri.containers.list();
    if (f?.id) {
      let one: ContainerRecord | undefined;
      try {
        one = this.cri.containers.find(f.id);
      } catch {
        one = undefined;
      }
      recs = one ? [one] : [];
    }
    if (f?.podSandboxId) {
      let sid = f.podSandboxId;
      try {
        sid = this.cri.sandboxes.find(f.podSandboxId)?.id ?? sid;
      } catch {
        // An ambiguous prefix matches nothing exactly.
      }
      recs = recs.filter((r) => r.sandboxId === sid);
    }
    if (f?.state) recs = recs.filter((r) => r.state === f.state!.state);
    const selector = f?.labelSelector ?? {};
    recs = recs.filter((r) => Object.entries(selector).every(([k, v]) => r.config.labels?.[k] === v));
    return {
      containers: recs.map((r) => ({
        id: r.id,
        podSandboxId: r.sandboxId,
        metadata: r.config.metadata,
        image: { image: r.imageName, annotations: r.config.image?.annotations ?? {} } as wire.cri.ImageSpec,
        imageRef: r.imageRef,
        state: r.state,
        createdAt: r.createdAt,
        labels: r.config.labels ?? {},
        annotations: r.config.annotations ?? {},
      })),
    };
  }

  async updateResources(
    ctx: Context,
    req: wire.cri.UpdateContainerResourcesRequest,
  ): Promise<wire.cri.UpdateContainerResourcesResponse> {
    const rec = this.cri.containers.get(req.containerId);
    // Any state but removal: a container that does not run gets the new limits in its spec only (containerd).
    if (this.live.get(rec.id)?.removing)
      throw new FailedPreconditionError(`container "${rec.id}" is in removing state`);
    const r = req.linux;
    if (!r) return {};
    // A task made ahead from the old spec would start with the old limits: the start makes it anew.
    if (rec.state === 'CONTAINER_CREATED') await this.dropPrecreated(ctx, rec.id);
    const c = await this.deps.containers.get(ctx, rec.id);
    const oldSpec = c.spec;
    const spec = JSON.parse(c.spec!.value.toString()) as oci.Spec;
    await withLinuxResources(r)(spec, { namespace: 'k8s.io', id: rec.id });
    if (r.oomScoreAdj && spec.process) spec.process.oomScoreAdj = r.oomScoreAdj;
    const newConfig: wire.cri.ContainerConfig = {
      ...rec.config,
      linux: { resources: r, securityContext: rec.config.linux?.securityContext },
    };
    const {
      state: _s,
      startedAt: _a,
      finishedAt: _f,
      exitCode: _e,
      reason: _r,
      message: _m,
      pid: _p,
      ...meta
    } = {
      ...rec,
      config: newConfig,
    };
    await this.deps.containers.update(
      ctx,
      {
        ...c,
        spec: oci.specToAny(spec),
        extensions: { ...c.extensions, [METADATA_EXTENSION]: metadataAny(meta) },
      },
      ['spec', `extensions.${METADATA_EXTENSION}`],
    );
    if (rec.state === 'CONTAINER_RUNNING') {
      try {
        await this.deps.tasks.update(ctx, {
          containerId: rec.id,
          resources: { typeUrl: RESOURCES_TYPE_URL, value: Buffer.from(JSON.stringify(linuxResources(r))) },
          annotations: {},
        });
      } catch (e) {
        await this.deps.containers.update(ctx, { ...c, spec: oldSpec }, [
          'spec',
          `extensions.${METADATA_EXTENSION}`,
        ]);
        throw e;
      }
    }
    rec.config = newConfig;
    return {};
  }

  /**
   * Runs `cmd` as an exec process of a running container (its process spec, a terminal when
   * `tty`), its FIFOs copied from `streams.stdin` and to `streams.stdout`/`stderr` (dropped
   * when absent). Resolves once the process started; ExecSync and the streaming Exec share it.
   */
  async startExec(
    ctx: Context,
    id: string,
    cmd: readonly string[],
    tty: boolean,
    streams: { stdin?: Readable; stdout?: Writable; stderr?: Writable },
    opts: CopyOptions = {},
  ): Promise<ExecProcess> {
    const rec = this.cri.containers.get(id);
    if (rec.state !== 'CONTAINER_RUNNING')
      throw new FailedPreconditionError(`container "${rec.id}" is in ${stateName(rec.state)} state`);
    const execId = randomBytes(16).toString('hex');
    // The spec and the FIFOs do not depend on each other: fetched and made at once.
    const [got, made] = await Promise.allSettled([
      this.deps.containers.get(ctx, rec.id),
      newFifoSet(join(this.stateDir(rec.id), 'exec'), execId, {
        stdin: streams.stdin !== undefined,
        terminal: tty,
      }),
    ]);
    if (got.status === 'rejected' || made.status === 'rejected') {
      if (made.status === 'fulfilled') await removeFifoSet(made.value).catch(() => {});
      throw got.status === 'rejected' ? got.reason : (made as PromiseRejectedResult).reason;
    }
    const fifos = made.value;
    const spec = JSON.parse(got.value.spec!.value.toString()) as oci.Spec;
    const process: oci.Process = { ...spec.process!, args: [...cmd], terminal: tty };
    if (tty) process.env = [...(process.env ?? []), 'TERM=xterm'];
    const io = copyIo(
      fifos,
      { stdin: streams.stdin, stdout: streams.stdout ?? discard(), stderr: streams.stderr ?? discard() },
      opts,
    );
    const ref = { containerId: rec.id, execId };
    let created = false;
    // The exit code and all the output are in hand before this runs: the caller has its answer
    // while the exec is deleted in the shim and its FIFOs removed (a few round trips the answer
    // need not wait for; what fails here, the container's own removal cleans up). Not the
    // call's context: it is cancelled once the answer is sent.
    const release = () => {
      const cleanup = this.cri.ctx();
      void Promise.all([
        created ? this.deps.tasks.deleteProcess(cleanup, ref).catch(() => {}) : undefined,
        io.close().catch(() => {}),
      ]);
    };
    try {
      await this.deps.tasks.exec(ctx, {
        ...ref,
        stdin: fifos.stdin,
        stdout: fifos.stdout,
        stderr: fifos.stderr,
        terminal: tty,
        spec: { typeUrl: PROCESS_TYPE_URL, value: Buffer.from(JSON.stringify(process)) },
      });
      created = true;
      const exited = this.deps.tasks.wait(ctx, ref);
      // A start that fails leaves this wait to end with the exec's deletion: no unhandled rejection.
      exited.catch(() => {});
      await this.deps.tasks.start(ctx, ref);
      return {
        ref,
        io,
        exited,
        drained: () => Promise.race([io.wait(), sleep(IO_DRAIN_MS)]),
        release,
      };
    } catch (e) {
      release();
      throw e;
    }
  }

  async execSync(ctx: Context, req: wire.cri.ExecSyncRequest): Promise<wire.cri.ExecSyncResponse> {
    const rec = this.cri.containers.get(req.containerId);
    if (rec.state !== 'CONTAINER_RUNNING')
      throw new FailedPreconditionError(`container "${rec.id}" is in ${stateName(rec.state)} state`);
    if (!req.cmd || req.cmd.length === 0) throw new InvalidArgumentError('exec command must not be empty');
    const stdout = new CappedBuffer(EXEC_SYNC_MAX_OUTPUT);
    const stderr = new CappedBuffer(EXEC_SYNC_MAX_OUTPUT);
    const exec = await this.startExec(ctx, rec.id, req.cmd, rec.config.tty, { stdout, stderr });
    try {
      let timer: NodeJS.Timeout | undefined;
      const timedOut =
        req.timeout > 0
          ? new Promise<'timeout'>((r) => {
              timer = setTimeout(() => r('timeout'), req.timeout * 1000);
            })
          : new Promise<never>(() => {});
      const res = await Promise.race([exec.exited, timedOut]);
      clearTimeout(timer);
      if (res === 'timeout') {
        await this.deps.tasks.kill(ctx, { ...exec.ref, signal: 9, all: false }).catch(() => {});
        await Promise.race([exec.exited.catch(() => {}), sleep(IO_DRAIN_MS)]);
        throw new DeadlineExceededError(
          `failed to exec in container: timeout ${req.timeout}s exceeded: context deadline exceeded`,
        );
      }
      await exec.drained();
      return { stdout: stdout.value(), stderr: stderr.value(), exitCode: res.exitStatus };
    } finally {
      exec.release();
    }
  }

  async close(): Promise<void> {
    this.abort.abort();
    for (const id of this.live.keys()) await this.closeIo(id, false);
    await this.oomLoop;
  }
}

function isShimLog(stdout: string): boolean {
  return stdout.toLowerCase().startsWith(`${CRI_LOG_SCHEME}://`);
}

function stateName(state: ContainerRecord['state']): string {
  return state;
}

function metadataAny(meta: Metadata) {
  return { typeUrl: METADATA_TYPE_URL, value: Buffer.from(JSON.stringify(meta)) };
}

/** Copies what the image holds at each volume's path into the volume's directory (made first). */
async function copyVolumeContents(rootfs: string, volumes: wire.cri.Mount[]): Promise<void> {
  for (const v of volumes) {
    await mkdir(v.hostPath, { recursive: true, mode: 0o755 });
    const src = await oci.resolveInRoot(rootfs, v.containerPath);
    try {
      if ((await stat(src)).isDirectory())
        await cp(src, v.hostPath, { recursive: true, preserveTimestamps: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}

/** ContainerStatus' resources as containerd reads them back from the spec (no oom_score_adj there). */
function specResources(spec: oci.Spec | undefined): wire.cri.ContainerResources | undefined {
  const r = spec?.linux?.resources;
  if (!r) return undefined;
  return {
    linux: {
      cpuPeriod: r.cpu?.period ?? 0,
      cpuQuota: r.cpu?.quota ?? 0,
      cpuShares: r.cpu?.shares ?? 0,
      memoryLimitInBytes: r.memory?.limit ?? 0,
      oomScoreAdj: 0,
      cpusetCpus: r.cpu?.cpus ?? '',
      cpusetMems: r.cpu?.mems ?? '',
      hugepageLimits: [],
      unified: {},
      memorySwapLimitInBytes: r.memory?.swap ?? 0,
    },
    windows: undefined,
  };
}

/** A handler's options as containerd prints the decoded runc Options: json names, empty ones left out. */
function goOptions(options: Record<string, unknown>): Record<string, unknown> | null {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) {
    if (v === '' || v === false || v === 0 || v === undefined || v === null) continue;
    out[k.replace(/^[A-Z]/, (c) => c.toLowerCase()).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = v;
  }
  return Object.keys(out).length > 0 ? out : null;
}
