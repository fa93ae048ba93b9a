import type { ContentInfo, IngestStatus, Writer } from '@berth/api';
import type { CommandSpec } from '../args';
import { api, formatLabels, type Globals, labelArgs, print, printJson, ReportedError } from '../runtime';
import { CTR_TABS, formatTable } from '../tabwriter';
import { humanDuration, humanSize } from '../units';

/** Bytes gathered from stdin before each write(): one write pipelines several 1 MiB messages. */
const INGEST_BATCH = 4 << 20;

const infoJson = (i: ContentInfo) => ({
  digest: i.digest,
  size: i.size,
  createdAt: i.createdAt.toISOString(),
  updatedAt: i.updatedAt.toISOString(),
  labels: i.labels,
});

const statusJson = (s: IngestStatus) => ({
  ref: s.ref,
  offset: s.offset,
  total: s.total,
  expected: s.expected,
  startedAt: s.startedAt.toISOString(),
  updatedAt: s.updatedAt.toISOString(),
});

const isCode = (err: unknown, code: string): boolean => (err as { code?: string } | undefined)?.code === code;

const listCommand: CommandSpec<Globals> = {
  name: 'list',
  aliases: ['ls'],
  summary: 'list all blobs in the store',
  argsUsage: '[<filter>...]',
  description:
    'List blobs in the content store, optionally matching containerd filters (e.g. labels.app==x).',
  flags: [{ name: 'quiet', short: 'q', type: 'bool', description: 'print only the blob digests' }],
  async run({ args, flags, global: g }) {
    const { client, ctx } = g.session();
    const infos = await client.content.list(ctx, args);
    if (flags.quiet) {
      print(g, infos.map((i) => `${i.digest}\n`).join(''));
      return;
    }
    if (g.format === 'json') {
      printJson(g, infos.map(infoJson));
      return;
    }
    const now = Date.now();
    let text = 'DIGEST\tSIZE\tAGE\tLABELS\n';
    for (const i of infos) {
      text += `${i.digest}\t${humanSize(i.size)}\t${humanDuration(now - i.createdAt.getTime())}\t${formatLabels(i.labels, '-')}\n`;
    }
    print(g, formatTable(text, CTR_TABS));
  },
};

const getCommand: CommandSpec<Globals> = {
  name: 'get',
  summary: 'write the data of a blob to stdout',
  argsUsage: '<digest>',
  minArgs: 1,
  maxArgs: 1,
  async run({ args, global: g }) {
    const digest = api().validateDigest(args[0]!);
    const { client, ctx } = g.session();
    const out = g.io.stdout;
    for await (const chunk of client.content.read(ctx, digest)) {
      if (!out.write(chunk)) {
        await new Promise<void>((resolve, reject) => {
          const done = (err?: Error) => {
            out.off('drain', done);
            out.off('error', done);
            if (err) reject(err);
            else resolve();
          };
          out.once('drain', done);
          out.once('error', done);
        });
      }
    }
  },
};

/** Copies stdin into the writer, skipping what a resumed ingest already holds. */
async function copyStdin(g: Globals, w: Writer, skip: number): Promise<void> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  for await (const data of g.io.stdin as AsyncIterable<Buffer | string>) {
    let chunk = typeof data === 'string' ? Buffer.from(data) : data;
    if (skip > 0) {
      const dropped = Math.min(skip, chunk.length);
      skip -= dropped;
      chunk = chunk.subarray(dropped);
      if (chunk.length === 0) continue;
    }
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes >= INGEST_BATCH) {
      await w.write(Buffer.concat(pending, pendingBytes));
      pending = [];
      pendingBytes = 0;
    }
  }
  if (skip > 0) {
    throw new (api().FailedPreconditionError)(
      `input is shorter than the ${skip} bytes the ingest already holds`,
    );
  }
  if (pendingBytes > 0) await w.write(Buffer.concat(pending, pendingBytes));
}

const ingestCommand: CommandSpec<Globals> = {
  name: 'ingest',
  summary: 'accept content into the store from stdin',
  argsUsage: '<ref>',
  description:
    'Read a blob from stdin into the store under a transaction ref. An interrupted ingest resumes: ' +
    'the bytes the store already holds are skipped on stdin. Content already present is not written again.',
  minArgs: 1,
  maxArgs: 1,
  flags: [
    { name: 'expected-size', type: 'int', value: 'N', description: 'validate against the provided size' },
    {
      name: 'expected-digest',
      type: 'string',
      value: 'DIGEST',
      description: 'verify content against the expected digest',
    },
    {
      name: 'label',
      type: 'string',
      value: 'KEY=VALUE',
      repeatable: true,
      description:
        'label the committed blob (repeatable), e.g. containerd.io/gc.root=<time> to keep it from GC',
    },
  ],
  async run({ args, flags, global: g }) {
    const ref = args[0]!;
    const a = api();
    if (ref === '') throw new a.InvalidArgumentError('must specify a transaction reference');
    const size = (flags['expected-size'] as number | undefined) ?? 0;
    if (size < 0) throw new a.InvalidArgumentError(`invalid expected size ${size}`);
    const expected = (flags['expected-digest'] as string | undefined) ?? '';
    if (expected !== '') a.validateDigest(expected);
    const labels = labelArgs((flags.label as string[] | undefined) ?? []);
    const { client, ctx } = g.session();
    let w: Writer;
    try {
      w = await client.content.writer(ctx, {
        ref,
        desc: { size, ...(expected ? { digest: expected } : {}) },
      });
    } catch (err) {
      // The blob is there already: nothing to do (as containerd's content.WriteBlob).
      if (isCode(err, 'ERR_ALREADY_EXISTS') && expected !== '') {
        if (g.format === 'json') printJson(g, { ref, digest: expected, size, existed: true });
        return;
      }
      throw err;
    }
    let existed = false;
    try {
      const status = await w.status();
      await copyStdin(g, w, status.offset);
      try {
        await w.commit(size, expected || undefined, Object.keys(labels).length ? { labels } : {});
      } catch (err) {
        if (!isCode(err, 'ERR_ALREADY_EXISTS')) throw err;
        existed = true;
      }
    } finally {
      await w.close().catch(() => {});
    }
    if (g.format === 'json') {
      const digest = w.digest();
      const info = await client.content.info(ctx, digest);
      printJson(g, { ref, digest, size: info.size, existed });
    }
  },
};

const removeCommand: CommandSpec<Globals> = {
  name: 'delete',
  aliases: ['del', 'remove', 'rm'],
  summary: 'permanently delete one or more blobs',
  argsUsage: '<digest>...',
  description: 'Delete one or more blobs permanently. Deleted blobs are printed; absent ones are skipped.',
  minArgs: 1,
  async run({ args, global: g }) {
    const a = api();
    const { client, ctx } = g.session();
    const removed: string[] = [];
    let failed = false;
    for (const arg of args) {
      try {
        a.validateDigest(arg);
        await client.content.delete(ctx, arg);
      } catch (err) {
        if (!isCode(err, 'ERR_NOT_FOUND')) {
          g.io.stderr.write(`berth: could not delete ${arg}: ${(err as Error).message}\n`);
          failed = true;
        }
        continue;
      }
      removed.push(arg);
      if (g.format === 'table') print(g, `${arg}\n`);
    }
    if (g.format === 'json') printJson(g, removed);
    if (failed) throw new ReportedError();
  },
};

const labelCommand: CommandSpec<Globals> = {
  name: 'label',
  summary: 'add, change or clear labels of a blob',
  argsUsage: '<digest> [<key>=<value>...]',
  description: 'Set labels on a blob (an empty value clears one) and print its labels.',
  minArgs: 1,
  async run({ args, global: g }) {
    const [object, ...rest] = args as [string, ...string[]];
    const digest = api().validateDigest(object);
    const labels = labelArgs(rest);
    const { client, ctx } = g.session();
    const paths = Object.keys(labels).map((k) => `labels.${k}`);
    const set = Object.fromEntries(Object.entries(labels).filter(([, v]) => v !== ''));
    const info =
      paths.length === 0
        ? await client.content.info(ctx, digest)
        : await client.content.update(ctx, { digest, labels: set }, paths);
    if (g.format === 'json') printJson(g, { digest: info.digest, labels: info.labels });
    else print(g, `${formatLabels(info.labels)}\n`);
  },
};

const activeCommand: CommandSpec<Globals> = {
  name: 'active',
  summary: 'display active transfers',
  argsUsage: '[<filter>...]',
  description: 'Display the ongoing ingests, optionally matching containerd filters (e.g. ref~=^layer-).',
  async run({ args, global: g }) {
    const { client, ctx } = g.session();
    const statuses = await client.content.listStatuses(ctx, args);
    if (g.format === 'json') {
      printJson(g, statuses.map(statusJson));
      return;
    }
    const now = Date.now();
    let text = 'REF\tSIZE\tAGE\t\n';
    for (const s of statuses) {
      text += `${s.ref}\t${humanSize(s.offset)}\t${humanDuration(now - s.startedAt.getTime())}\t\n`;
    }
    print(g, formatTable(text, CTR_TABS));
  },
};

export const contentCommand: CommandSpec<Globals> = {
  name: 'content',
  summary: 'manage content',
  subcommands: [activeCommand, removeCommand, getCommand, ingestCommand, listCommand, labelCommand],
};
