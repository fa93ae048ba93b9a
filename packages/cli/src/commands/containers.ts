import type { Container, Context } from '@berth/api';
import type { Client } from '@berth/client';
import type { CommandSpec } from '../args';
import { CONTAINER_FLAGS, createContainer } from '../container-setup';
import { api, formatLabels, type Globals, labelArgs, print, printJson, ReportedError } from '../runtime';
import { formatTable, type TabWriterOptions } from '../tabwriter';

/** ctr's containers table: tabwriter.NewWriter(w, 4, 8, 4, ' ', 0). */
const CTR_CONTAINERS: TabWriterOptions = { minWidth: 4, tabWidth: 8, padding: 4, padChar: ' ' };

const anyJson = (v: { typeUrl: string; value: Buffer } | undefined) =>
  v ? { type_url: v.typeUrl, value: v.value.toString('base64') } : undefined;

/** The spec of a container as JSON, when it carries one (an OCI spec is JSON bytes). */
function specJson(c: Container): unknown {
  if (!c.spec || c.spec.value.length === 0) return undefined;
  try {
    return JSON.parse(c.spec.value.toString());
  } catch {
    return anyJson(c.spec);
  }
}

/** A container as ctr's `containers info` prints it (Go field names, the spec decoded). */
function containerInfo(c: Container): Record<string, unknown> {
  const extensions: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c.extensions)) extensions[k] = anyJson(v);
  const out: Record<string, unknown> = {
    ID: c.id,
    Labels: Object.keys(c.labels).length > 0 ? c.labels : null,
    Image: c.image,
    Runtime: { Name: c.runtime.name, Options: anyJson(c.runtime.options) ?? null },
    SnapshotKey: c.snapshotKey,
    Snapshotter: c.snapshotter,
    CreatedAt: c.createdAt.toISOString(),
    UpdatedAt: c.updatedAt.toISOString(),
    Extensions: Object.keys(extensions).length > 0 ? extensions : null,
  };
  if (c.sandbox) out.Sandbox = c.sandbox;
  const spec = specJson(c);
  if (spec !== undefined) out.Spec = spec;
  return out;
}

/** JSON with ctr's four-space indent. */
const printCtrJson = (g: Globals, v: unknown) => print(g, `${JSON.stringify(v, null, 4)}\n`);

const listCommand: CommandSpec<Globals> = {
  name: 'list',
  aliases: ['ls'],
  summary: 'list containers',
  argsUsage: '[<filter>...]',
  description:
    'List containers, optionally matching filters on id, image, runtime.name, snapshotter, labels.<key>.',
  flags: [{ name: 'quiet', short: 'q', type: 'bool', description: 'print only the container ids' }],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const containers = await client.containers.list(ctx, args);
    if (flags.quiet) {
      print(g, containers.map((c) => `${c.id}\n`).join(''));
      return;
    }
    if (g.format === 'json') {
      printJson(g, containers.map(containerInfo));
      return;
    }
    let text = 'CONTAINER\tIMAGE\tRUNTIME\t\n';
    for (const c of containers) text += `${c.id}\t${c.image || '-'}\t${c.runtime.name}\t\n`;
    print(g, formatTable(text, CTR_CONTAINERS));
  },
};

const infoCommand: CommandSpec<Globals> = {
  name: 'info',
  summary: 'get info about a container',
  argsUsage: '<id>',
  minArgs: 1,
  maxArgs: 1,
  flags: [{ name: 'spec', type: 'bool', description: 'only display the spec' }],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const c = await client.containers.get(ctx, args[0]!);
    if (flags.spec) printCtrJson(g, specJson(c) ?? null);
    else printCtrJson(g, containerInfo(c));
  },
};

const labelCommand: CommandSpec<Globals> = {
  name: 'label',
  summary: 'set and clear labels for a container',
  argsUsage: '<id> [<key>=<value>...]',
  minArgs: 1,
  description: 'Set labels (an empty value removes one) and print the labels the container then has.',
  async run({ args, global: g }) {
    const [id, ...pairs] = args;
    const labels = labelArgs(pairs);
    const { client, ctx } = g.session();
    const current = await client.containers.get(ctx, id!);
    let result = current.labels;
    if (pairs.length > 0) {
      const paths = Object.keys(labels).map((k) => `labels.${k}`);
      result = (await client.containers.update(ctx, { ...current, labels }, paths)).labels;
    }
    if (g.format === 'json') printJson(g, result);
    else print(g, `${formatLabels(result)}\n`);
  },
};

/**
 * One call to the daemon's Tasks service (owned by the runtime; reached here through a
 * plain stub). Resolves undefined when the container has no task, or the daemon no Tasks
 * service.
 */
async function tasksCall(client: Client, ctx: Context, method: 'Get' | 'Delete', id: string): Promise<any> {
  const stub = client.stubFor('containerd.services.tasks.v1.Tasks') as unknown as Record<
    string,
    (req: object, md: unknown, cb: (err: { code: number; details?: string } | null, res: any) => void) => void
  >;
  const grpc = require('@grpc/grpc-js') as typeof import('@grpc/grpc-js');
  const md = new grpc.Metadata();
  md.set(api().NAMESPACE_HEADER, ctx.namespace!);
  return new Promise((resolvePromise, reject) => {
    stub[method]!.call(stub, { containerId: id, execId: '' }, md, (err, res) => {
      if (!err) return resolvePromise(res ?? {});
      const e = api().fromGrpcStatus({ code: err.code, details: err.details ?? '' });
      if (e.code === 'ERR_NOT_FOUND' || e.code === 'ERR_NOT_IMPLEMENTED') return resolvePromise(undefined);
      reject(e);
    });
  });
}

/** As ctr: a stopped or created task is deleted first; a running one refuses the delete. */
async function deleteContainer(
  client: Client,
  ctx: Context,
  id: string,
  keepSnapshot: boolean,
): Promise<void> {
  const c = await client.containers.get(ctx, id);
  const task = await tasksCall(client, ctx, 'Get', id);
  if (task) {
    const status = String(task.process?.status ?? 'UNKNOWN');
    if (status !== 'STOPPED' && status !== 'CREATED') {
      throw new (api().FailedPreconditionError)(
        `cannot delete a non stopped container: ${status.toLowerCase()}`,
      );
    }
    await tasksCall(client, ctx, 'Delete', id);
  }
  await client.containers.delete(ctx, id);
  // As ctr's WithSnapshotCleanup: the container's snapshot goes with it.
  if (!keepSnapshot && c.snapshotter && c.snapshotKey) {
    try {
      await client.snapshots(c.snapshotter).remove(ctx, c.snapshotKey);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_NOT_FOUND') throw err;
    }
  }
}

const removeCommand: CommandSpec<Globals> = {
  name: 'delete',
  aliases: ['del', 'remove', 'rm'],
  summary: 'delete one or more existing containers',
  argsUsage: '<id>...',
  minArgs: 1,
  flags: [
    { name: 'keep-snapshot', type: 'bool', description: 'do not clean up the snapshot with the container' },
  ],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    let failed = false;
    const removed: string[] = [];
    for (const id of args) {
      try {
        await deleteContainer(client, ctx, id, flags['keep-snapshot'] === true);
        removed.push(id);
      } catch (err) {
        failed = true;
        g.io.stderr.write(`berth: failed to delete container "${id}": ${(err as Error).message}\n`);
      }
    }
    if (g.format === 'json') printJson(g, removed);
    if (failed) throw new ReportedError();
  },
};

const createCommand: CommandSpec<Globals> = {
  name: 'create',
  summary: 'create a container from an image or a root filesystem directory',
  argsUsage: '<image>|<rootfs> <id> [<command> [<arg>...]]',
  minArgs: 2,
  flagsEndAfter: 2,
  description:
    'Create a container record as `berth run` does, without starting it: the image is unpacked into the ' +
    'snapshotter when it is not yet, a snapshot <id> is prepared on its layers, and the spec is built as ctr ' +
    "builds it (containerd's default spec, image config, flags; users resolved in the image). With --rootfs the " +
    'first argument is a directory used as the root filesystem.',
  flags: CONTAINER_FLAGS,
  async run({ args, flags, global: g }) {
    const [ref, id, ...command] = args;
    const { container } = await createContainer(g, flags, ref!, id!, command, flags.cgroup !== undefined);
    if (g.format === 'json') printJson(g, containerInfo(container));
  },
};

export const containersCommand: CommandSpec<Globals> = {
  name: 'containers',
  aliases: ['c', 'container'],
  summary: 'manage containers',
  subcommands: [createCommand, removeCommand, infoCommand, listCommand, labelCommand],
};
