import type { AnyValue, Container, Context } from '@berth/api';
import type { Client, TaskProcess } from '@berth/client';
import { type CommandSpec, UsageError } from '../args';
import { decodeMetrics, metricsJson, metricsRows } from '../cgroup-metrics';
import { containerSpec, rootfsMounts } from '../container-setup';
import { api, type Globals, print, printJson, ReportedError } from '../runtime';
import { formatTable, type TabWriterOptions } from '../tabwriter';
import {
  copyStdio,
  drainAndRelease,
  forwardSignals,
  openStdio,
  type ProcessStdio,
  parseSignal,
  presizeConsole,
  resizeOnWinch,
} from '../task-io';

/** ctr's tasks ls table: tabwriter.NewWriter(w, 4, 8, 4, ' ', 0). */
const CTR_TASKS: TabWriterOptions = { minWidth: 4, tabWidth: 8, padding: 4, padChar: ' ' };
/** ctr's ps and metrics tables: tabwriter.NewWriter(w, 1, 8, 4, ' ', 0). */
const CTR_PS: TabWriterOptions = { minWidth: 1, tabWidth: 8, padding: 4, padChar: ' ' };

const STOP_SIGNAL_LABEL = 'io.containerd.image.config.stop-signal';
const PROCESS_TYPE_URL = 'types.containerd.io/opencontainers/runtime-spec/1/Process';

const FIFO_DIR_FLAG = {
  name: 'fifo-dir',
  type: 'string',
  value: 'DIR',
  description: 'directory for the IO FIFOs',
} as const;
const NULL_IO_FLAG = { name: 'null-io', type: 'bool', description: 'send all IO to /dev/null' } as const;

/** Go's time.Time.String() of a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`. */
function goTime(date: Date, nanos: number): string {
  const iso = date.toISOString();
  const frac = nanos > 0 ? `.${String(nanos).padStart(9, '0').replace(/0+$/, '')}` : '';
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${frac} +0000 UTC`;
}

const codeOf = (err: unknown): string | undefined => (err as { code?: string } | undefined)?.code;

/** As ctr's loadTask: the container must exist, then its task. */
async function loadTask(
  client: Client,
  ctx: Context,
  id: string,
): Promise<{ c: Container; task: TaskProcess }> {
  const c = await client.containers.get(ctx, id);
  const task = await client.tasks.get(ctx, id);
  return { c, task };
}

/**
 * Starts the process (unless `opts.start` is false: attach) with our stdio attached, passes
 * signals or terminal sizes on while it runs, and resolves its exit status. A task's console
 * is sized before it starts; an exec's exists only once started (it gets its size in its spec).
 */
async function startAndWait(
  g: Globals,
  client: Client,
  ctx: Context,
  stdio: ProcessStdio,
  id: string,
  execId = '',
  opts: { start?: boolean; presized?: boolean } = {},
): Promise<number> {
  const start = opts.start !== false;
  let presized = opts.presized === true;
  if (start && !presized && !execId) presized = await presizeConsole(client, ctx, stdio, id, execId);
  const exited = client.tasks.wait(ctx, id, execId);
  exited.catch(() => {});
  const stopSignals = stdio.config.terminal ? () => {} : forwardSignals(client, ctx, id, execId);
  let stopResize = () => {};
  try {
    if (start) await client.tasks.start(ctx, id, execId);
    stdio.onStdinEnd(() => {
      client.tasks.closeIO(ctx, id, execId).catch(() => {});
    });
    if (stdio.config.terminal) stopResize = resizeOnWinch(g, client, ctx, stdio, id, execId, presized);
    return (await exited).exitStatus;
  } finally {
    stopSignals();
    stopResize();
  }
}

const listCommand: CommandSpec<Globals> = {
  name: 'list',
  aliases: ['ls'],
  summary: 'list tasks',
  maxArgs: 0,
  flags: [{ name: 'quiet', short: 'q', type: 'bool', description: 'print only the task id' }],
  async run({ flags, global: g }) {
    const { client, ctx } = g.session();
    const tasks = await client.tasks.list(ctx);
    if (flags.quiet) {
      print(g, tasks.map((t) => `${t.id}\n`).join(''));
      return;
    }
    if (g.format === 'json') {
      printJson(g, tasks);
      return;
    }
    let text = 'TASK\tPID\tSTATUS\t\n';
    for (const t of tasks) text += `${t.id}\t${t.pid}\t${t.status}\n`;
    print(g, formatTable(text, CTR_TASKS));
  },
};

const startCommand: CommandSpec<Globals> = {
  name: 'start',
  summary: 'start a container that has been created',
  argsUsage: '<container>',
  minArgs: 1,
  maxArgs: 1,
  description:
    "Create and start the container's task with our stdio (a terminal when its spec asks for one) and wait for it; berth exits with its exit status.",
  flags: [
    NULL_IO_FLAG,
    FIFO_DIR_FLAG,
    { name: 'detach', short: 'd', type: 'bool', description: 'detach once the task started' },
  ],
  async run({ args, flags, global: g }) {
    const id = args[0]!;
    const detach = flags.detach === true;
    const { client, ctx } = g.session();
    const c = await client.containers.get(ctx, id);
    const spec = containerSpec(c);
    const mounts = await rootfsMounts(client, ctx, c);
    let stdio: ProcessStdio | undefined = await openStdio(g, id, {
      tty: spec.process?.terminal === true,
      nullIo: flags['null-io'] === true,
      detach,
      fifoDir: flags['fifo-dir'] as string | undefined,
    });
    let created = false;
    let code = 0;
    try {
      await client.tasks.create(ctx, { containerId: id, rootfs: mounts, ...stdio.config });
      created = true;
      if (detach) {
        await client.tasks.start(ctx, id);
        await stdio.release({ keepFifos: true });
        stdio = undefined;
        created = false;
        return;
      }
      code = await startAndWait(g, client, ctx, stdio, id);
      await client.tasks.delete(ctx, id);
      created = false;
      await drainAndRelease(stdio);
      stdio = undefined;
    } finally {
      await stdio?.release();
      if (created) await client.tasks.delete(ctx, id).catch(() => {});
    }
    if (code !== 0) throw new ReportedError(code);
  },
};

const attachCommand: CommandSpec<Globals> = {
  name: 'attach',
  summary: 'attach to the IO of a running container',
  argsUsage: '<container>',
  minArgs: 1,
  maxArgs: 1,
  description:
    "Copy the task's output to ours and our input to it until it exits (its FIFOs, as `run -d` left them); then delete the task, as ctr does, and exit with its status.",
  async run({ args, global: g }) {
    const id = args[0]!;
    const { client, ctx } = g.session();
    const { c, task } = await loadTask(client, ctx, id);
    const spec = containerSpec(c);
    const tty = spec.process?.terminal === true;
    const { fifoSetOf } = require('@berth/client') as typeof import('@berth/client');
    const stdio = copyStdio(g, fifoSetOf(task), tty);
    let code: number;
    try {
      code = await startAndWait(g, client, ctx, stdio, id, '', { start: false });
      await client.tasks.delete(ctx, id);
      await drainAndRelease(stdio);
    } finally {
      await stdio.release();
    }
    if (code !== 0) throw new ReportedError(code);
  },
};

const execCommand: CommandSpec<Globals> = {
  name: 'exec',
  summary: 'execute additional processes in an existing container',
  argsUsage: '<container> <command> [<arg>...]',
  minArgs: 2,
  flagsEndAfter: 1,
  description:
    "Run a command in the container's running task, with the container's process settings (env, user, capabilities) and our stdio; berth exits with its exit status.",
  flags: [
    {
      name: 'exec-id',
      type: 'string',
      value: 'ID',
      description: 'exec specific id for the process (required)',
    },
    { name: 'tty', short: 't', type: 'bool', description: 'allocate a terminal' },
    { name: 'detach', short: 'd', type: 'bool', description: 'detach once the process started' },
    { name: 'cwd', type: 'string', value: 'DIR', description: 'working directory of the new process' },
    { name: 'user', short: 'u', type: 'string', value: 'USER[:GROUP]', description: 'user id or name' },
    FIFO_DIR_FLAG,
  ],
  async run({ path, args, flags, global: g }) {
    const [id, ...command] = args;
    const execId = flags['exec-id'] as string | undefined;
    if (!execId) throw new UsageError('Required flag "exec-id" not set', path);
    const tty = flags.tty === true;
    const detach = flags.detach === true;
    const { client, ctx } = g.session();
    const c = await client.containers.get(ctx, id!);
    const spec = containerSpec(c);
    if (flags.user) {
      const { oci, withReadonlyRootfs: withRootfs } =
        require('@berth/client') as typeof import('@berth/client');
      const mounts = await rootfsMounts(client, ctx, c);
      const apply = (rootfs?: string) =>
        oci.applyOpts(spec, { namespace: g.namespace, id: id!, ...(rootfs ? { rootfs } : {}) }, [
          oci.withUser(flags.user as string),
        ]);
      if (mounts.length > 0 && process.getuid?.() === 0) await withRootfs(mounts, apply);
      else await apply();
    }
    let stdio: ProcessStdio | undefined = await openStdio(g, execId, {
      tty,
      detach,
      fifoDir: flags['fifo-dir'] as string | undefined,
    });
    let added = false;
    let code = 0;
    try {
      const processSpec = { ...(spec.process ?? {}), terminal: tty, args: command } as Record<
        string,
        unknown
      >;
      if (flags.cwd) processSpec.cwd = flags.cwd;
      // An exec's console is made when it starts, too late for a resize to beat a quick process:
      // runc sizes it from the spec instead.
      let size: { width: number; height: number } | undefined;
      try {
        size = stdio.console?.size();
      } catch {
        // No size to give: the process starts with the runtime's default.
      }
      if (size?.width && size.height) processSpec.consoleSize = { height: size.height, width: size.width };
      const specAny: AnyValue = {
        typeUrl: PROCESS_TYPE_URL,
        value: Buffer.from(JSON.stringify(processSpec)),
      };
      await client.tasks.exec(ctx, { containerId: id!, execId, ...stdio.config, spec: specAny });
      added = true;
      if (detach) {
        await client.tasks.start(ctx, id!, execId);
        await stdio.release({ keepFifos: true });
        stdio = undefined;
        added = false;
        return;
      }
      code = await startAndWait(g, client, ctx, stdio, id!, execId, { presized: !!processSpec.consoleSize });
      await client.tasks.deleteProcess(ctx, id!, execId);
      added = false;
      await drainAndRelease(stdio);
      stdio = undefined;
    } finally {
      await stdio?.release();
      if (added) await client.tasks.deleteProcess(ctx, id!, execId).catch(() => {});
    }
    if (code !== 0) throw new ReportedError(code);
  },
};

const killCommand: CommandSpec<Globals> = {
  name: 'kill',
  summary: 'signal a container (default: SIGTERM)',
  argsUsage: '<container>',
  minArgs: 1,
  maxArgs: 1,
  description: "Send a signal to the task (default: the image's stop signal, else SIGTERM).",
  flags: [
    {
      name: 'signal',
      short: 's',
      type: 'string',
      value: 'SIGNAL',
      description: 'signal to send to the container',
    },
    { name: 'exec-id', type: 'string', value: 'ID', description: 'process ID to kill' },
    {
      name: 'all',
      short: 'a',
      type: 'bool',
      description: 'send signal to all processes inside the container',
    },
  ],
  async run({ path, args, flags, global: g }) {
    const id = args[0]!;
    const execId = (flags['exec-id'] as string | undefined) ?? '';
    const all = flags.all === true;
    if (all && execId) throw new UsageError('specify an exec-id or all; not both', path);
    const { client, ctx } = g.session();
    const c = await client.containers.get(ctx, id);
    const signal = parseSignal(
      (flags.signal as string | undefined) || c.labels[STOP_SIGNAL_LABEL] || 'SIGTERM',
    );
    await client.tasks.get(ctx, id);
    await client.tasks.kill(ctx, id, signal, { execId, all });
  },
};

const pauseCommand: CommandSpec<Globals> = {
  name: 'pause',
  summary: 'pause an existing container',
  argsUsage: '<container>',
  minArgs: 1,
  maxArgs: 1,
  async run({ args, global: g }) {
    const { client, ctx } = g.session();
    await loadTask(client, ctx, args[0]!);
    await client.tasks.pause(ctx, args[0]!);
  },
};

const resumeCommand: CommandSpec<Globals> = {
  name: 'resume',
  summary: 'resume a paused container',
  argsUsage: '<container>',
  minArgs: 1,
  maxArgs: 1,
  async run({ args, global: g }) {
    const { client, ctx } = g.session();
    await loadTask(client, ctx, args[0]!);
    await client.tasks.resume(ctx, args[0]!);
  },
};

/** A process's runtime details as ctr prints them with %+v (runc's shim: the exec id). */
function processInfoText(info: AnyValue | undefined): string {
  if (!info) return '-';
  const name = info.typeUrl.slice(info.typeUrl.lastIndexOf('/') + 1);
  if (name === 'containerd.runc.v1.ProcessDetails') {
    // One string field: exec_id = 1.
    let execId = '';
    const v = info.value;
    let pos = 0;
    while (pos < v.length) {
      const tag = v[pos++]!;
      if ((tag & 7) !== 2) break;
      let len = 0;
      let shift = 0;
      for (;;) {
        const b = v[pos++]!;
        len |= (b & 0x7f) << shift;
        if ((b & 0x80) === 0) break;
        shift += 7;
      }
      if (tag >> 3 === 1) execId = v.subarray(pos, pos + len).toString('utf8');
      pos += len;
    }
    return `&ProcessDetails{ExecID:${execId},XXX_unrecognized:[],}`;
  }
  return `&{${name}}`;
}

const psCommand: CommandSpec<Globals> = {
  name: 'ps',
  summary: 'list processes for container',
  argsUsage: '<container>',
  minArgs: 1,
  maxArgs: 1,
  async run({ args, global: g }) {
    const { client, ctx } = g.session();
    await loadTask(client, ctx, args[0]!);
    const processes = await client.tasks.listPids(ctx, args[0]!);
    if (g.format === 'json') {
      printJson(
        g,
        processes.map((p) => ({ pid: p.pid, info: p.info ? processInfoText(p.info) : null })),
      );
      return;
    }
    let text = 'PID\tINFO\n';
    for (const p of processes) text += `${p.pid}\t${processInfoText(p.info)}\n`;
    print(g, formatTable(text, CTR_PS));
  },
};

/** Waits for the process to exit after SIGKILL to all (ctr's WithProcessKill for delete -f). */
async function killAndWait(client: Client, ctx: Context, id: string, execId = ''): Promise<void> {
  const exited = client.tasks.wait(ctx, id, execId);
  exited.catch(() => {});
  try {
    await client.tasks.kill(ctx, id, 9, execId ? { execId } : { all: true });
  } catch (err) {
    if (codeOf(err) === 'ERR_FAILED_PRECONDITION') return;
    if (codeOf(err) !== 'ERR_NOT_FOUND') throw err;
  }
  await exited.catch(() => {});
}

/** Deletes a task (or exec) that has stopped; ctr's message for one that has not. */
function requireStopped(p: TaskProcess): void {
  if (p.status === 'STOPPED' || p.status === 'UNKNOWN') return;
  if (p.status === 'CREATED' && p.pid === 0) return;
  throw new (api().FailedPreconditionError)(
    `task must be stopped before deletion: ${p.status.toLowerCase()}: failed precondition`,
  );
}

const deleteCommand: CommandSpec<Globals> = {
  name: 'delete',
  aliases: ['del', 'remove', 'rm'],
  summary: 'delete one or more tasks',
  argsUsage: '<container>...',
  minArgs: 1,
  flags: [
    { name: 'force', short: 'f', type: 'bool', description: 'force delete task process' },
    { name: 'exec-id', type: 'string', value: 'ID', description: 'process ID to delete' },
  ],
  async run({ args, flags, global: g }) {
    const force = flags.force === true;
    const execId = flags['exec-id'] as string | undefined;
    const { client, ctx } = g.session();
    const { fifoSetOf, removeFifoSet } = require('@berth/client') as typeof import('@berth/client');
    if (execId) {
      const id = args[0]!;
      await loadTask(client, ctx, id);
      if (force) await killAndWait(client, ctx, id, execId);
      const p = await client.tasks.get(ctx, id, execId);
      requireStopped(p);
      const status = await client.tasks.deleteProcess(ctx, id, execId);
      await removeFifoSet(fifoSetOf(p));
      if (status.exitStatus !== 0) throw new ReportedError(status.exitStatus);
      return;
    }
    let firstError: unknown;
    for (const id of args) {
      try {
        const { task } = await loadTask(client, ctx, id);
        if (force) await killAndWait(client, ctx, id);
        requireStopped(force ? await client.tasks.get(ctx, id) : task);
        const status = await client.tasks.delete(ctx, id);
        await removeFifoSet(fifoSetOf(task));
        if (status.exitStatus !== 0)
          g.io.stderr.write(`berth: task ${id} exit with non-zero exit code ${status.exitStatus}\n`);
      } catch (err) {
        firstError ??= err;
        g.io.stderr.write(`berth: unable to delete ${id}: ${(err as Error).message}\n`);
      }
    }
    if (firstError) throw new ReportedError();
  },
};

const metricsCommand: CommandSpec<Globals> = {
  name: 'metrics',
  aliases: ['metric'],
  summary: 'get a single data point of metrics for a task',
  argsUsage: '<container>',
  minArgs: 1,
  maxArgs: 1,
  description: "The task's cgroup statistics: ctr's table, or the whole message with --format json.",
  async run({ args, global: g }) {
    const id = args[0]!;
    const { client, ctx } = g.session();
    await loadTask(client, ctx, id);
    const [metric] = await client.tasks.metrics(ctx, [`id==${id}`]);
    if (!metric) throw new (api().NotFoundError)(`no metrics for task ${id}: not found`);
    const decoded = metric.data && decodeMetrics(metric.data.typeUrl, metric.data.value);
    if (!decoded) {
      throw new (api().InvalidArgumentError)(
        `cannot convert metric data to cgroups.Metrics (${metric.data?.typeUrl || 'no data'})`,
      );
    }
    if (g.format === 'json') {
      print(g, `${metricsJson(decoded.version, decoded.data)}\n`);
      return;
    }
    const when = goTime(metric.timestamp, metric.timestampNanos);
    const text = `ID\tTIMESTAMP\t\n${metric.id}\t${when}\t\n\n${metricsRows(decoded.version, decoded.data)}`;
    print(g, formatTable(text, CTR_PS));
  },
};

export const tasksCommand: CommandSpec<Globals> = {
  name: 'tasks',
  aliases: ['t', 'task'],
  summary: 'manage tasks',
  subcommands: [
    attachCommand,
    deleteCommand,
    execCommand,
    listCommand,
    killCommand,
    pauseCommand,
    psCommand,
    resumeCommand,
    startCommand,
    metricsCommand,
  ],
};
