import { promises as fs } from 'node:fs';
import { connect, Socket } from 'node:net';
import { constants } from 'node:os';
import { join } from 'node:path';
import {
  AlreadyExistsError,
  type AnyValue,
  type ContainerStore,
  type Context,
  decodeAny,
  type Envelope,
  FailedPreconditionError,
  failpoint,
  fromTimestamp,
  isNotFound,
  isUnavailable,
  NotFoundError,
  type Publisher,
  preciseNow,
  removeTree,
  requireNamespace,
  toTimestamp,
  type wire,
} from '@berth/api';
import { socketPath, TtrpcClient } from '@berth/ttrpc';
import { type Logger, nullLogger } from '../log';
import { berthShimAddress, isBerthShim, specAnnotations } from './berth-shim';
import { resolveShimBinary } from './binary';
import { Bundle } from './bundle';
import { type CreateTaskOptions, type DeleteResult, ShimTask, TASK_SERVICE } from './shim';
import { type Exit, type ShimCommandConfig, shimDelete, shimStart } from './shim-binary';
import { openShimLog, type ShimLog } from './shim-log';

export const TASK_EXIT = '/tasks/exit';
export const TASK_DELETE = '/tasks/delete';

/** How long berthd gives a shim to answer when it reconnects, and to clean up or shut down. */
const LOAD_TIMEOUT_MS = 5_000;
const SHUTDOWN_TIMEOUT_MS = 3_000;
const CLEANUP_TIMEOUT_MS = 10_000;

export interface TaskManagerConfig {
  /** `<root>/io.containerd.runtime.v2.task`: work directories. */
  root: string;
  /** `<state>/io.containerd.runtime.v2.task`: bundles. */
  state: string;
  /** berthd's gRPC socket, passed to shims as `-address`. */
  address: string;
  /** berthd's ttrpc socket, where shims forward their events. */
  ttrpcAddress: string;
  /** `-publish-binary` for shims ('' when berthd has no publish command). */
  publishBinary?: string;
  /** Finds the runtime of a bundle berthd did not record a shim binary for. */
  containers?: ContainerStore;
  /** Where the manager publishes what a dead shim can no longer: its task's exit. */
  events: Publisher;
  log?: Logger;
  /** Directories searched for shim binaries after PATH. */
  shimDirs?: readonly string[];
  /** Start shims with -debug. */
  debugShims?: boolean;
}

export interface RuntimeCreateOptions extends CreateTaskOptions {
  /** The runtime name (`io.containerd.runc.v2`) or an absolute path to a shim binary. */
  runtime: string;
  /** The OCI spec as the container carries it; its JSON becomes the bundle's config.json. */
  spec: AnyValue;
}

const key = (ns: string, id: string): string => `${ns}\u0000${id}`;

const errMessage = (err: unknown): string => (err as Error)?.message ?? String(err);

/** Removes a unix socket nobody listens on any more (a SIGKILLed shim leaves its socket). */
async function removeStaleSocket(address: string): Promise<boolean> {
  let path: string;
  try {
    path = socketPath(address);
  } catch {
    return false;
  }
  if (path.startsWith('\u0000')) return false;
  const live = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', (err: NodeJS.ErrnoException) =>
      resolve(err.code !== 'ECONNREFUSED' && err.code !== 'ENOENT'),
    );
  });
  if (live) return false;
  try {
    await fs.unlink(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * containerd's runtime v2 task manager: one bundle and one shim connection per task.
 * Creating a task makes its bundle, runs `<shim> start`, connects over ttrpc and asks the
 * shim to create the container. Shims outlive berthd: close() only disconnects, and
 * open() reconnects to every shim that is still there and cleans up after those that
 * are not. A shim that goes away on its own leaves its task STOPPED until deleted.
 */
export class TaskManager {
  private readonly tasks = new Map<string, ShimTask>();
  private readonly creating = new Set<string>();
  private readonly cleanups = new Map<ShimTask, Promise<void>>();
  /** `start` of berth's shim running per shim address: later creates of that group wait for it. */
  private readonly starting = new Map<string, Promise<string>>();
  private readonly log: Logger;
  private closing = false;

  private constructor(private readonly cfg: TaskManagerConfig) {
    this.log = cfg.log ?? nullLogger;
  }

  /** Creates the directories, watches shims' exit events and reconnects to existing shims. */
  static async open(cfg: TaskManagerConfig): Promise<TaskManager> {
    await fs.mkdir(cfg.root, { recursive: true, mode: 0o711 });
    await fs.mkdir(cfg.state, { recursive: true, mode: 0o711 });
    const m = new TaskManager(cfg);
    await m.loadExisting();
    return m;
  }

  private commandConfig(binary: string): ShimCommandConfig {
    return {
      binary,
      address: this.cfg.address,
      ttrpcAddress: this.cfg.ttrpcAddress,
      publishBinary: this.cfg.publishBinary ?? '',
      debug: this.cfg.debugShims,
    };
  }

  /**
   * Takes note of an event a shim forwarded: the init process's /tasks/exit, so a task
   * whose shim dies after it exited keeps its real exit status.
   */
  observe(envelope: Envelope): void {
    if (envelope.topic !== TASK_EXIT) return;
    let e: {
      containerId?: string;
      id?: string;
      pid?: number;
      exitStatus?: number;
      exitedAt?: wire.protobuf.Timestamp | null;
    };
    try {
      e = decodeAny(envelope.event) as typeof e;
    } catch {
      return;
    }
    if (!e.containerId || e.id !== e.containerId) return;
    const task = this.tasks.get(key(envelope.namespace, e.containerId));
    if (!task || task.phase === 'dead') return;
    task.exit = {
      pid: e.pid ?? 0,
      exitStatus: e.exitStatus ?? 0,
      exitedAt: e.exitedAt ? fromTimestamp(e.exitedAt) : preciseNow(),
    };
  }

  /** The task, live or dead. NotFound when there is none. */
  get(ctx: Context, id: string): ShimTask {
    const ns = requireNamespace(ctx);
    const task = this.tasks.get(key(ns, id));
    if (!task) throw new NotFoundError(`task ${id} not found`);
    return task;
  }

  /** The tasks of the context's namespace. */
  list(ctx: Context): ShimTask[] {
    const ns = requireNamespace(ctx);
    return [...this.tasks.values()].filter((t) => t.namespace === ns);
  }

  /** Every task of every namespace. */
  all(): ShimTask[] {
    return [...this.tasks.values()];
  }

  /** Makes the bundle, starts the shim and creates the task in it; nothing is left on failure. */
  async create(
    ctx: Context,
    id: string,
    opts: RuntimeCreateOptions,
  ): Promise<{ task: ShimTask; pid: number }> {
    const ns = requireNamespace(ctx);
    const k = key(ns, id);
    if (this.tasks.has(k) || this.creating.has(k)) throw new AlreadyExistsError(`task ${id}: already exists`);
    this.creating.add(k);
    try {
      const binary = resolveShimBinary(opts.runtime, { extraDirs: this.cfg.shimDirs });
      const shim = this.commandConfig(binary);
      const bundle = await Bundle.create(this.cfg.root, this.cfg.state, ns, id, opts.spec.value);
      let log: ShimLog | undefined;
      let client: TtrpcClient | undefined;
      let address: string;
      let task: ShimTask | undefined;
      try {
        await failpoint('runtime.create.bundle');
        log = await openShimLog(bundle.path, this.log.with({ id, namespace: ns, shim: binary }));
        const onClose = (): void => {
          if (task) this.onShimClosed(task);
        };
        // Recorded before any shim starts: a berthd killed from here on leaves a bundle whose
        // shim the next start can still find, ask to clean up and shut down.
        await bundle.setShimBinary(binary);
        const found = isBerthShim(binary)
          ? await this.reserveBerthShim(shim, bundle, opts, onClose)
          : undefined;
        if (found) {
          ({ address, client } = found);
        } else {
          address = await shimStart(shim, bundle, opts.options);
          client = await TtrpcClient.connect(address, { timeoutMs: LOAD_TIMEOUT_MS, onClose });
        }
      } catch (err) {
        log?.close();
        // A shim that started but could not be reached is asked to clean up after itself.
        if ((await bundle.address()) !== undefined) await this.runShimDelete(shim, bundle);
        await bundle
          .delete()
          .catch((e) => this.log.with({ id, error: errMessage(e) }).error('failed to delete bundle'));
        throw rewrap(err, `failed to start shim: ${errMessage(err)}`);
      }
      task = new ShimTask(id, ns, bundle, shim, address, client, log);
      task.phase = 'deleting'; // until the container exists, a closing connection is ours to handle
      this.tasks.set(k, task);
      let pid: number;
      try {
        await failpoint('runtime.create.shim');
        // Not cancelled with the caller: a container the shim creates after berthd gave
        // up on it would be left running, unknown.
        pid = await task.create({ namespace: ns }, opts);
      } catch (err) {
        await this.teardown(task, true);
        throw rewrap(err, `failed to create shim task: ${errMessage(err)}`);
      }
      task.phase = 'live';
      task.onVanished = () => this.onVanished(task!);
      if (client.closed) this.onShimClosed(task);
      return { task, pid };
    } finally {
      this.creating.delete(k);
    }
  }

  /**
   * berth's shim serves every container of a group from one process: when that process
   * runs, berthd asks it to hold a place for the task (Connect{id}) over the connection
   * the task then uses, and skips the `start` binary (a Node start per task). Undefined
   * when no shim answers there: the caller runs `start`. Only one `start` per group runs
   * at a time; the others wait for it and then join the shim it launched.
   */
  private async reserveBerthShim(
    shim: ShimCommandConfig,
    bundle: Bundle,
    opts: RuntimeCreateOptions,
    onClose: () => void,
  ): Promise<{ address: string; client: TtrpcClient } | undefined> {
    const address = berthShimAddress(
      this.cfg.address,
      bundle.namespace,
      bundle.id,
      specAnnotations(opts.spec.value),
    );
    for (;;) {
      const pending = this.starting.get(address);
      if (pending) await pending.catch(() => {});
      const client = await TtrpcClient.connect(address, { timeoutMs: LOAD_TIMEOUT_MS, onClose }).catch(
        () => undefined,
      );
      if (client) {
        const reserved = await client
          .call(
            TASK_SERVICE,
            'Connect',
            { id: bundle.id },
            { namespace: bundle.namespace, timeoutMs: LOAD_TIMEOUT_MS },
          )
          .then(
            () => true,
            () => false,
          );
        if (reserved) {
          await bundle.setAddress(address);
          return { address, client };
        }
        await client.close(); // a shim on its way out: `start` launches the next one
      }
      if (this.starting.has(address)) continue;
      const started = shimStart(shim, bundle, opts.options);
      this.starting.set(address, started);
      try {
        const printed = await started;
        const startedClient = await TtrpcClient.connect(printed, { timeoutMs: LOAD_TIMEOUT_MS, onClose });
        return { address: printed, client: startedClient };
      } finally {
        if (this.starting.get(address) === started) this.starting.delete(address);
      }
    }
  }

  /**
   * Deletes the task's init process in the shim, shuts the shim down and removes the
   * bundle. A dead task is simply forgotten (with its /tasks/delete event).
   */
  async delete(ctx: Context, id: string): Promise<DeleteResult> {
    const task = this.get(ctx, id);
    const ns = task.namespace;
    if (task.phase === 'deleting') throw new FailedPreconditionError(`task ${id}: is being deleted`);
    if (task.phase === 'dead') {
      await this.cleanups.get(task);
      this.forget(task);
      const exit = task.exit ?? { pid: 0, exitStatus: 255, exitedAt: preciseNow() };
      await this.publish(ns, TASK_DELETE, 'containerd.events.TaskDelete', {
        containerId: id,
        pid: exit.pid,
        exitStatus: exit.exitStatus,
        exitedAt: toTimestamp(exit.exitedAt),
        id: '',
      });
      return { pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: toTimestamp(exit.exitedAt) };
    }
    task.phase = 'deleting';
    let result: DeleteResult;
    try {
      // Not cancelled with the caller either: half a delete is worse than a slow one.
      result = await task.deleteProcess({ namespace: ns }, '');
    } catch (err) {
      if (isUnavailable(err) && task.client.closed) {
        // The shim died under us: clean up as for any dead shim, then forget the task.
        task.phase = 'live';
        this.onShimClosed(task);
        await this.cleanups.get(task);
        return this.delete(ctx, id);
      }
      if (!isNotFound(err)) {
        task.phase = 'live';
        if (task.client.closed) this.onShimClosed(task);
        throw err;
      }
      // The shim does not know the container: take the rest down all the same.
      await this.teardown(task, false);
      throw err;
    }
    await this.teardown(task, false);
    return result;
  }

  /** Shuts the shim down, disconnects, removes the bundle and forgets the task. */
  private async teardown(task: ShimTask, deleteInShim: boolean): Promise<void> {
    const log = this.log.with({ id: task.id, namespace: task.namespace });
    if (deleteInShim) await task.deleteProcess({}, '').catch(() => {});
    await task
      .shutdown(SHUTDOWN_TIMEOUT_MS)
      .catch((err) => log.with({ error: errMessage(err) }).warn('failed to shut down shim'));
    await task.disconnect();
    await task.bundle
      .delete()
      .catch((err) => log.with({ error: errMessage(err) }).error('failed to delete bundle'));
    this.forget(task);
  }

  private forget(task: ShimTask): void {
    const k = key(task.namespace, task.id);
    if (this.tasks.get(k) === task) this.tasks.delete(k);
  }

  private async publish(
    ns: string,
    topic: string,
    type: string,
    event: Record<string, unknown>,
  ): Promise<void> {
    try {
      await this.cfg.events.publish({ namespace: ns }, topic, type, event);
    } catch (err) {
      this.log.with({ topic, error: errMessage(err) }).error('failed to publish event');
    }
  }

  /** The connection to a shim closed: if berthd did not close it, the shim is gone. */
  private onShimClosed(task: ShimTask): void {
    if (this.closing || task.phase !== 'live' || this.cleanups.has(task)) return;
    this.log.with({ id: task.id, namespace: task.namespace }).warn('shim disconnected, cleaning up after it');
    const done = this.cleanupDeadShim(task).catch((err) =>
      this.log.with({ id: task.id, error: errMessage(err) }).error('cleanup after dead shim failed'),
    );
    this.cleanups.set(task, done);
    task.cleanedUp = done;
  }

  /**
   * The shim no longer has a task berthd holds as live: a delete berthd sent before it was
   * killed finished in the shim afterwards (the shim outlives berthd's connection). Nobody
   * can delete the task any more (every call answers NotFound), so berthd finishes the
   * delete itself: shuts the shim down, removes the bundle, forgets the task, and publishes
   * the /tasks/delete the lost caller never saw. Without this the bundle stays forever.
   */
  private onVanished(task: ShimTask): void {
    if (this.closing || task.phase !== 'live' || this.tasks.get(key(task.namespace, task.id)) !== task)
      return;
    task.phase = 'deleting';
    this.log
      .with({ id: task.id, namespace: task.namespace })
      .warn('the shim no longer has this task (a delete finished after a crash), removing its bundle');
    const done = this.teardown(task, false).then(async () => {
      const exit = task.exit ?? { pid: 0, exitStatus: 255, exitedAt: preciseNow() };
      await this.publish(task.namespace, TASK_DELETE, 'containerd.events.TaskDelete', {
        containerId: task.id,
        pid: exit.pid,
        exitStatus: exit.exitStatus,
        exitedAt: toTimestamp(exit.exitedAt),
        id: '',
      });
    });
    const logged = done.catch((err) =>
      this.log.with({ id: task.id, error: errMessage(err) }).error('removing a vanished task failed'),
    );
    this.cleanups.set(task, logged);
    void logged.finally(() => this.cleanups.delete(task));
  }

  /** `<shim> delete`, then the bundle and the shim's socket; the task stays, STOPPED. */
  private async cleanupDeadShim(task: ShimTask): Promise<void> {
    const sawExit = task.exit !== undefined;
    task.phase = 'dead';
    task.deathReason = 'its shim exited unexpectedly (ttrpc: closed)';
    task.log?.close();
    const exit = await this.runShimDelete(task.shim, task.bundle);
    task.exit ??= exit ?? { pid: 0, exitStatus: 255, exitedAt: preciseNow() };
    await task.bundle
      .delete()
      .catch((err) =>
        this.log.with({ id: task.id, error: errMessage(err) }).error('failed to delete bundle'),
      );
    await removeStaleSocket(task.address);
    if (!sawExit) {
      await this.publish(task.namespace, TASK_EXIT, 'containerd.events.TaskExit', {
        containerId: task.id,
        id: task.id,
        pid: task.exit.pid,
        exitStatus: task.exit.exitStatus,
        exitedAt: toTimestamp(task.exit.exitedAt),
      });
    }
  }

  private async runShimDelete(shim: ShimCommandConfig, bundle: Bundle): Promise<Exit | undefined> {
    const log = this.log.with({ id: bundle.id, namespace: bundle.namespace });
    try {
      return await shimDelete(
        shim,
        bundle,
        (msg) => log.with({ output: msg }).warn('cleanup warnings'),
        CLEANUP_TIMEOUT_MS,
      );
    } catch (err) {
      log.with({ error: errMessage(err) }).warn('failed to clean up after shim');
      return undefined;
    }
  }

  /** containerd's loadExistingTasks: every bundle under state, namespace by namespace. */
  private async loadExisting(): Promise<void> {
    for (const ns of await subdirs(this.cfg.state)) {
      for (const id of await subdirs(join(this.cfg.state, ns))) {
        try {
          await this.loadOne(ns, id);
        } catch (err) {
          this.log.with({ id, namespace: ns, error: errMessage(err) }).error('failed to load task');
        }
      }
      await this.cleanupWorkDirs(ns);
    }
  }

  private async loadOne(ns: string, id: string): Promise<void> {
    const log = this.log.with({ id, namespace: ns });
    const bundle = Bundle.load(this.cfg.state, ns, id);
    const entries = await fs.readdir(bundle.path).catch(() => [] as string[]);
    if (entries.length === 0) {
      await bundle.delete();
      return;
    }
    let binary = await bundle.shimBinary();
    if (binary === undefined) {
      const container = await this.cfg.containers?.get({ namespace: ns }, id).catch(() => undefined);
      if (!container) {
        log.warn('bundle without a container or a shim binary, removing it');
        await shutdownShimAt(await bundle.address(), id, ns);
        await bundle.delete();
        return;
      }
      binary = container.runtime.name;
    }
    try {
      binary = resolveShimBinary(binary, { extraDirs: this.cfg.shimDirs });
    } catch (err) {
      log.with({ error: errMessage(err) }).error('failed to resolve runtime path, removing the bundle');
      await bundle.delete();
      return;
    }
    const shim = this.commandConfig(binary);
    const address = await bundle.address();
    let task: ShimTask | undefined;
    let client: TtrpcClient | undefined;
    let shimLog: ShimLog | undefined;
    let loaded = false;
    try {
      if (address === undefined) throw new NotFoundError('the shim wrote no address');
      client = await TtrpcClient.connect(address, {
        timeoutMs: LOAD_TIMEOUT_MS,
        onClose: () => {
          if (task && loaded) this.onShimClosed(task);
        },
      });
      shimLog = await openShimLog(bundle.path, this.log.with({ id, namespace: ns, shim: binary }));
      task = new ShimTask(id, ns, bundle, shim, address, client, shimLog);
      await task.connect(undefined, LOAD_TIMEOUT_MS);
    } catch (err) {
      log.with({ error: errMessage(err) }).warn('shim is gone, cleaning up after it');
      shimLog?.close();
      await client?.close();
      // Remembered as a dead task, so its exit can still be read and it can be deleted;
      // unless its container is gone too: then nobody could ever delete it.
      const dead = task ?? new ShimTask(id, ns, bundle, shim, address ?? '', closedClient(), undefined);
      const containerGone = await this.cfg.containers?.get({ namespace: ns }, id).then(
        () => false,
        (e) => isNotFound(e),
      );
      if (!containerGone) this.tasks.set(key(ns, id), dead);
      const done = this.cleanupDeadShim(dead).catch((e) =>
        log.with({ error: errMessage(e) }).error('cleanup after dead shim failed'),
      );
      this.cleanups.set(dead, done);
      dead.cleanedUp = done;
      await done;
      return;
    }
    const orphan = await this.orphanReason(task);
    if (orphan !== undefined) {
      // Nobody could ever delete this task: reap it, shim and bundle, and say so.
      log.with({ reason: orphan, shim: binary }).warn('removing a task left behind by a crash');
      await this.reap(task);
      return;
    }
    this.tasks.set(key(ns, id), task);
    loaded = true;
    const loadedTask = task;
    loadedTask.onVanished = () => this.onVanished(loadedTask);
    if (client.closed) this.onShimClosed(task);
    log.info('reconnected to shim');
  }

  /**
   * Why a reconnected task belongs to nobody, or undefined when it is a real task. berthd
   * killed during Tasks.Create leaves a shim whose create was cut off (the shim holds no
   * task); a container deleted while berthd was down leaves a task without a container.
   * Either shim would run forever (containerd leaves both).
   */
  private async orphanReason(task: ShimTask): Promise<string | undefined> {
    const state = await task.state(undefined, '', LOAD_TIMEOUT_MS).then(
      () => undefined,
      (err: unknown) => err,
    );
    if (state !== undefined && isNotFound(state)) return 'its create never finished (the shim holds no task)';
    const containers = this.cfg.containers;
    if (!containers) return undefined;
    const gone = await containers.get({ namespace: task.namespace }, task.id).then(
      () => false,
      (err: unknown) => isNotFound(err),
    );
    return gone ? 'its container no longer exists' : undefined;
  }

  /** Kills what runs in an orphaned task, deletes it in the shim, shuts the shim down, removes the bundle. */
  private async reap(task: ShimTask): Promise<void> {
    task.phase = 'deleting';
    await task.kill({}, '', constants.signals.SIGKILL, true).catch(() => {});
    const deadline = Date.now() + SHUTDOWN_TIMEOUT_MS;
    while (Date.now() < deadline) {
      const st = await task.state(undefined, '', LOAD_TIMEOUT_MS).catch(() => undefined);
      if (st === undefined || st.status === 'STOPPED') break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await this.teardown(task, true);
  }

  /** Work directories whose task was not loaded are leftovers (a reboot cleared the state). */
  private async cleanupWorkDirs(ns: string): Promise<void> {
    for (const id of await subdirs(join(this.cfg.root, ns))) {
      const t = this.tasks.get(key(ns, id));
      if (t && t.phase !== 'dead') continue;
      await removeTree(join(this.cfg.root, ns, id)).catch(() => {});
    }
  }

  /** Disconnects from every shim, leaving them and their containers running. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.allSettled([...this.cleanups.values()]);
    await Promise.allSettled([...this.tasks.values()].map((t) => t.disconnect()));
  }
}

/**
 * Asks whatever shim serves address to shut down, when berthd cannot tell which shim binary
 * it is (a bundle of an older berthd killed while starting it): the shim v2 API is the same
 * for every shim, and a shim still serving other containers (berth's serves a group) stays.
 * Best effort: nothing may listen there any more.
 */
async function shutdownShimAt(address: string | undefined, id: string, namespace: string): Promise<void> {
  if (address === undefined) return;
  const client = await TtrpcClient.connect(address, { timeoutMs: LOAD_TIMEOUT_MS }).catch(() => undefined);
  if (!client) return;
  await client
    .call(TASK_SERVICE, 'Shutdown', { id, now: false }, { namespace, timeoutMs: SHUTDOWN_TIMEOUT_MS })
    .catch(() => {});
  await client.close();
}

/** A client that is already closed: what a dead task carries instead of a connection. */
function closedClient(): TtrpcClient {
  const socket = new Socket();
  socket.destroy();
  return new TtrpcClient(socket);
}

async function subdirs(dir: string): Promise<string[]> {
  try {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  } catch {
    return [];
  }
}

/** The same kind of error with a message that says where it happened. */
function rewrap(err: unknown, message: string): Error {
  if (err instanceof Error) {
    const Ctor = err.constructor as new (msg: string, opts?: { cause?: unknown }) => Error;
    try {
      return new Ctor(message, { cause: err });
    } catch {
      return new Error(message, { cause: err });
    }
  }
  return new Error(message);
}
