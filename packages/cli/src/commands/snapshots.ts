import {
  type Context,
  formatRFC3339Nano,
  type Mount,
  type SnapshotInfo,
  type SnapshotKind,
  type Snapshotter,
} from '@berth/api';
import type { CommandSpec, FlagSpec, Invocation } from '../args';
import { binarySize } from '../image-content';
import { type Globals, labelArgs, print, printJson, type Session } from '../runtime';
import { CTR_SPACES, formatTable } from '../tabwriter';

/** ctr's `--snapshotter` (also on every subcommand here, so it may follow the command word). */
const SNAPSHOTTER_FLAG: FlagSpec = {
  name: 'snapshotter',
  type: 'string',
  value: 'NAME',
  env: ['CONTAINERD_SNAPSHOTTER'],
  description: "snapshotter name; empty means the namespace's default, else overlayfs",
};

const DEFAULT_SNAPSHOTTER = 'overlayfs';
/** Namespace label naming its default snapshotter (containerd's client reads it too). */
const DEFAULT_SNAPSHOTTER_LABEL = 'containerd.io/defaults/snapshotter';
const GC_ROOT_LABEL = 'containerd.io/gc.root';

const KIND_NAME: Record<SnapshotKind, string> = { active: 'Active', view: 'View', committed: 'Committed' };

/** The snapshotter the flag (or environment) names; else the namespace's default label; else overlayfs. */
async function snapshotterOf(
  inv: Invocation<Globals>,
): Promise<{ sn: Snapshotter; ctx: Context; session: Session; name: string }> {
  const session = inv.global.session();
  let name = (inv.flags.snapshotter as string | undefined) ?? '';
  if (name === '') {
    try {
      const labels = await session.client.namespaces.labels(session.ctx, session.ctx.namespace!);
      name = labels[DEFAULT_SNAPSHOTTER_LABEL] ?? '';
    } catch {
      // No such namespace yet (berthd answers NotFound): the default applies.
    }
  }
  name ||= DEFAULT_SNAPSHOTTER;
  return { sn: session.client.snapshots(name), ctx: session.ctx, session, name };
}

/** Go's time.RFC3339 in UTC, whole seconds (ctr's gc.root label values). */
const rfc3339Seconds = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Go's time.Time JSON: RFC 3339 with nanoseconds, trailing zeros trimmed (UTC here). */
const goTime = (d: Date): string => formatRFC3339Nano(d);

/** encoding/json's MarshalIndent with four spaces: HTML characters escaped, as ctr prints. */
export function goJson(value: unknown): string {
  return JSON.stringify(value, null, 4)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026');
}

const sortedLabels = (labels: Record<string, string>) =>
  Object.fromEntries(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));

/** snapshots.Info as ctr's `snapshots info` prints it (Parent and Labels omitted when empty). */
export function infoGoJson(i: SnapshotInfo): string {
  const out: Record<string, unknown> = { Kind: KIND_NAME[i.kind], Name: i.name };
  if (i.parent) out.Parent = i.parent;
  if (Object.keys(i.labels).length > 0) out.Labels = sortedLabels(i.labels);
  out.Created = goTime(i.createdAt);
  out.Updated = goTime(i.updatedAt);
  return goJson(out);
}

/** mount.Mount as ctr's `--mounts` prints it. */
const mountsGoJson = (mounts: Mount[]) =>
  goJson(
    mounts.map((m) => ({ Type: m.type, Source: m.source, Options: m.options.length ? m.options : null })),
  );

const mountCommands = (target: string, mounts: Mount[]) =>
  mounts.map((m) => `mount -t ${m.type} ${m.source} ${target} -o ${m.options.join(',')}\n`).join('');

const infoJson = (i: SnapshotInfo) => ({
  name: i.name,
  parent: i.parent,
  kind: i.kind,
  labels: i.labels,
  createdAt: i.createdAt.toISOString(),
  updatedAt: i.updatedAt.toISOString(),
});

const withSnapshotter = (flags: readonly FlagSpec[] = []): FlagSpec[] => [...flags, SNAPSHOTTER_FLAG];

async function walkAll(sn: Snapshotter, ctx: Context, filters?: string[]): Promise<SnapshotInfo[]> {
  const out: SnapshotInfo[] = [];
  await sn.walk(ctx, (i) => void out.push(i), filters);
  return out;
}

const listCommand: CommandSpec<Globals> = {
  name: 'list',
  aliases: ['ls'],
  summary: 'list snapshots',
  argsUsage: '[<filter>...]',
  description: 'List snapshots, optionally matching containerd filters (kind==committed, labels.x==y...).',
  flags: withSnapshotter(),
  async run(inv) {
    const { sn, ctx } = await snapshotterOf(inv);
    const infos = await walkAll(sn, ctx, inv.args);
    const g = inv.global;
    if (g.format === 'json') {
      printJson(g, infos.map(infoJson));
      return;
    }
    let text = 'KEY\tPARENT\tKIND\t\n';
    for (const i of infos) text += `${i.name}\t${i.parent}\t${KIND_NAME[i.kind]}\t\n`;
    print(g, formatTable(text, CTR_SPACES));
  },
};

function createCommand(kind: 'prepare' | 'view'): CommandSpec<Globals> {
  return {
    name: kind,
    summary:
      kind === 'prepare'
        ? 'prepare a snapshot from a committed snapshot'
        : 'create a read-only snapshot from a committed snapshot',
    argsUsage: '<key> [<parent>]',
    minArgs: 1,
    maxArgs: 2,
    flags: withSnapshotter([
      {
        name: 'target',
        short: 't',
        type: 'string',
        value: 'PATH',
        description: 'mount target path, will print mount, if provided',
      },
      { name: 'mounts', type: 'bool', description: 'print out snapshot mounts as JSON' },
    ]),
    async run(inv) {
      const { sn, ctx } = await snapshotterOf(inv);
      const [key, parent = ''] = inv.args as [string, string?];
      // As ctr: a prepared snapshot is a GC root (views are not).
      const mounts =
        kind === 'prepare'
          ? await sn.prepare(ctx, key, parent, { labels: { [GC_ROOT_LABEL]: rfc3339Seconds(new Date()) } })
          : await sn.view(ctx, key, parent);
      const target = inv.flags.target as string | undefined;
      if (target) print(inv.global, mountCommands(target, mounts));
      if (inv.flags.mounts) print(inv.global, `${mountsGoJson(mounts)}\n`);
    },
  };
}

const mountsCommand: CommandSpec<Globals> = {
  name: 'mounts',
  aliases: ['m', 'mount'],
  summary: 'mount gets mount commands for the snapshots',
  argsUsage: '<target> <key>',
  minArgs: 2,
  maxArgs: 2,
  flags: withSnapshotter(),
  async run(inv) {
    const { sn, ctx } = await snapshotterOf(inv);
    const [target, key] = inv.args as [string, string];
    const mounts = await sn.mounts(ctx, key);
    if (inv.global.format === 'json') printJson(inv.global, mounts);
    else print(inv.global, mountCommands(target, mounts));
  },
};

const commitCommand: CommandSpec<Globals> = {
  name: 'commit',
  summary: 'commit an active snapshot into the provided name',
  argsUsage: '<key> <active>',
  minArgs: 2,
  maxArgs: 2,
  flags: withSnapshotter(),
  async run(inv) {
    const { sn, ctx } = await snapshotterOf(inv);
    const [name, active] = inv.args as [string, string];
    await sn.commit(ctx, name, active, { labels: { [GC_ROOT_LABEL]: rfc3339Seconds(new Date()) } });
  },
};

const removeCommand: CommandSpec<Globals> = {
  name: 'delete',
  aliases: ['del', 'remove', 'rm'],
  summary: 'remove snapshots',
  argsUsage: '<key> [<key>...]',
  flags: withSnapshotter(),
  async run(inv) {
    const { sn, ctx } = await snapshotterOf(inv);
    for (const key of inv.args) {
      try {
        await sn.remove(ctx, key);
      } catch (e) {
        // ctr's words; the first failure stops the rest.
        (e as Error).message = `failed to remove ${JSON.stringify(key)}: ${(e as Error).message}`;
        throw e;
      }
    }
  },
};

const usageCommand: CommandSpec<Globals> = {
  name: 'usage',
  summary: 'usage snapshots',
  argsUsage: '[<key>...]',
  flags: withSnapshotter([{ name: 'b', short: 'b', type: 'bool', description: 'display size in bytes' }]),
  async run(inv) {
    const { sn, ctx } = await snapshotterOf(inv);
    const g = inv.global;
    const keys = inv.args.length > 0 ? inv.args : (await walkAll(sn, ctx)).map((i) => i.name);
    const rows: { key: string; size: number; inodes: number }[] = [];
    let text = 'KEY\tSIZE\tINODES\t\n';
    // As ctr: a failure prints nothing but the error.
    for (const key of keys) {
      const u = await sn.usage(ctx, key);
      rows.push({ key, ...u });
      text += `${key}\t${inv.flags.b ? String(u.size) : binarySize(u.size)}\t${u.inodes}\t\n`;
    }
    if (g.format === 'json') printJson(g, rows);
    else print(g, formatTable(text, CTR_SPACES));
  },
};

const treeCommand: CommandSpec<Globals> = {
  name: 'tree',
  summary: 'display tree view of snapshot branches',
  flags: withSnapshotter(),
  maxArgs: 0,
  async run(inv) {
    const { sn, ctx } = await snapshotterOf(inv);
    // ctr's tree: nodes in walk order, a parent not seen yet gets a placeholder.
    const order: string[] = [];
    const nodes = new Map<string, { parent: string; children: string[] }>();
    const add = (name: string, parent: string) => {
      let node = nodes.get(name);
      if (!node) {
        node = { parent, children: [] };
        nodes.set(name, node);
        order.push(name);
      } else node.parent = parent;
      if (parent !== '') {
        if (!nodes.has(parent)) add(parent, '');
        nodes.get(parent)!.children.push(name);
      }
    };
    for (const i of await walkAll(sn, ctx)) add(i.name, i.parent);
    let text = '';
    const printNode = (name: string, level: number) => {
      text += `${'  '.repeat(level)}${level > 0 ? '\\_' : ''} ${name}\n`;
      for (const child of nodes.get(name)!.children) printNode(child, level + 1);
    };
    for (const name of order) if (nodes.get(name)!.parent === '') printNode(name, 0);
    print(inv.global, text);
  },
};

const infoCommand: CommandSpec<Globals> = {
  name: 'info',
  summary: 'get info about a snapshot',
  argsUsage: '<key>',
  minArgs: 1,
  maxArgs: 1,
  flags: withSnapshotter(),
  async run(inv) {
    const { sn, ctx } = await snapshotterOf(inv);
    const info = await sn.stat(ctx, inv.args[0]!);
    if (inv.global.format === 'json') printJson(inv.global, infoJson(info));
    else print(inv.global, `${infoGoJson(info)}\n`);
  },
};

const labelCommand: CommandSpec<Globals> = {
  name: 'label',
  summary: 'add labels to a snapshot',
  argsUsage: '<name> [<label>=<value>...]',
  description: 'Set labels on a snapshot (an empty value removes one) and print its labels.',
  minArgs: 1,
  flags: withSnapshotter(),
  async run(inv) {
    const { sn, ctx } = await snapshotterOf(inv);
    const [name, ...pairs] = inv.args as [string, ...string[]];
    const given = labelArgs(pairs, '');
    const paths = Object.keys(given).map((k) => `labels.${k}`);
    const labels = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== ''));
    const info =
      paths.length === 0 ? await sn.stat(ctx, name) : await sn.update(ctx, { name, labels }, paths);
    if (inv.global.format === 'json') printJson(inv.global, info.labels);
    else {
      print(
        inv.global,
        `${Object.entries(sortedLabels(info.labels))
          .map(([k, v]) => `${k}=${v}`)
          .join(',')}\n`,
      );
    }
  },
};

export const snapshotsCommand: CommandSpec<Globals> = {
  name: 'snapshots',
  aliases: ['snapshot'],
  summary: 'manage snapshots',
  flags: [SNAPSHOTTER_FLAG],
  subcommands: [
    commitCommand,
    infoCommand,
    listCommand,
    mountsCommand,
    createCommand('prepare'),
    removeCommand,
    labelCommand,
    treeCommand,
    usageCommand,
    createCommand('view'),
  ],
};
