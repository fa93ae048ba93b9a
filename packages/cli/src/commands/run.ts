import type { CommandSpec } from '../args';
import { UsageError } from '../args';
import { CONTAINER_FLAGS, createContainer } from '../container-setup';
import { type Globals, ReportedError } from '../runtime';
import {
  drainAndRelease,
  forwardSignals,
  openStdio,
  type ProcessStdio,
  presizeConsole,
  resizeOnWinch,
} from '../task-io';

/**
 * `berth run`: ctr run — a container from an image, its task started with our stdio, waited
 * for; berth exits with the container's exit status (128 + n for a signal n).
 */
export const runCommand: CommandSpec<Globals> = {
  name: 'run',
  summary: 'run a container',
  argsUsage: '<image>|<rootfs> <id> [<command> [<arg>...]]',
  minArgs: 2,
  flagsEndAfter: 2,
  description:
    "Run a container from an image (unpacked into the snapshotter first when it is not yet), as ctr run. The command after the id replaces the image's entrypoint and command; flags go before the image. " +
    "berth exits with the container's exit status. Signals berth receives are passed on to the container (without -t); " +
    'with -t the container gets a terminal and ours is raw until it exits.',
  flags: [
    { name: 'rm', type: 'bool', description: 'remove the container after running (not with --detach)' },
    {
      name: 'detach',
      short: 'd',
      type: 'bool',
      description: 'detach once the task started (its output waits in the FIFOs for tasks attach)',
    },
    { name: 'null-io', type: 'bool', description: 'send all IO to /dev/null' },
    { name: 'fifo-dir', type: 'string', value: 'DIR', description: 'directory for the IO FIFOs' },
    ...CONTAINER_FLAGS,
  ],
  async run({ path, args, flags, global: g }) {
    const [ref, id, ...command] = args;
    const rm = flags.rm === true;
    const detach = flags.detach === true;
    if (rm && detach) throw new UsageError('flags --detach and --rm cannot be specified together', path);
    const { client, ctx } = g.session();
    const { container, mounts } = await createContainer(
      g,
      flags,
      ref!,
      id!,
      command,
      flags.cgroup !== undefined,
    );
    const spec = JSON.parse(container.spec?.value.toString() ?? '{}');
    const tty = spec.process?.terminal === true;
    let stdio: ProcessStdio | undefined;
    let taskCreated = false;
    let code = 0;
    try {
      stdio = await openStdio(g, id!, {
        tty,
        nullIo: flags['null-io'] === true,
        detach,
        fifoDir: flags['fifo-dir'] as string | undefined,
      });
      await client.tasks.create(ctx, { containerId: id!, rootfs: mounts, ...stdio.config });
      taskCreated = true;
      if (detach) {
        await client.tasks.start(ctx, id!);
        // The FIFOs stay for `tasks attach`; `tasks delete` removes them.
        await stdio.release({ keepFifos: true });
        stdio = undefined;
        return;
      }
      const presized = tty && (await presizeConsole(client, ctx, stdio, id!));
      const exited = client.tasks.wait(ctx, id!);
      // A failed start still leaves the wait pending: keep it from being an unhandled rejection.
      exited.catch(() => {});
      // Signals are ours to pass on from the moment the process may run.
      const stopSignals = tty ? () => {} : forwardSignals(client, ctx, id!);
      let stopResize = () => {};
      try {
        await client.tasks.start(ctx, id!);
        stdio.onStdinEnd(() => {
          client.tasks.closeIO(ctx, id!).catch(() => {});
        });
        if (tty) stopResize = resizeOnWinch(g, client, ctx, stdio, id!, '', presized);
        code = (await exited).exitStatus;
      } finally {
        stopSignals();
        stopResize();
      }
      await client.tasks.delete(ctx, id!);
      taskCreated = false;
      await drainAndRelease(stdio);
      stdio = undefined;
    } finally {
      // Whatever failed, nothing we opened stays behind; a detached task that started keeps its FIFOs.
      await stdio?.release();
      if (!detach) {
        if (taskCreated) await client.tasks.delete(ctx, id!).catch(() => {});
        if (rm) await removeContainer(g, id!);
      }
    }
    if (code !== 0) throw new ReportedError(code);
  },
};

/** As ctr's container.Delete(WithSnapshotCleanup): the record, then its snapshot. */
async function removeContainer(g: Globals, id: string): Promise<void> {
  const { client, ctx } = g.session();
  const c = await client.containers.get(ctx, id);
  await client.containers.delete(ctx, id);
  if (c.snapshotter && c.snapshotKey) {
    await client
      .snapshots(c.snapshotter)
      .remove(ctx, c.snapshotKey)
      .catch((err) => {
        if ((err as { code?: string }).code !== 'ERR_NOT_FOUND') throw err;
      });
  }
}
