import type { Readable, Writable } from 'node:stream';
import {
  type AnyMessage,
  type Context,
  decodeAny,
  encodeAny,
  isBerthError,
  type Labels,
  typeNameOfUrl,
} from '@berth/api';
import type { Client } from './client';
import { unary } from './rpc';
import { ClientStream, STREAMING_SERVICE, streamId } from './streaming';

export const TRANSFER_SERVICE = 'containerd.services.transfer.v1.Transfer';
const T = 'containerd.types.transfer.';

/** One containerd.types.transfer.Progress message. */
export interface TransferProgress {
  event: string;
  name: string;
  parents: string[];
  progress: number;
  total: number;
}

export interface TransferPlatform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Credentials handed to the daemon when the registry asks (an AuthResponse). */
export type TransferCredentials = (
  host: string,
  reference: string,
) => Promise<{ username?: string; secret: string } | undefined>;

/** How the daemon reaches the registry (containerd.types.transfer.RegistryResolver). */
export interface ResolverOptions {
  /** containerd's config_path: `<dir>/<host>/hosts.toml`. */
  hostsDir?: string;
  /** Plain http for hosts without a hosts.toml saying otherwise. */
  plainHttp?: boolean;
  headers?: Record<string, string>;
  /** Asked over an auth stream whenever the registry wants credentials. */
  credentials?: TransferCredentials;
}

export interface TransferOptions {
  onProgress?: (p: TransferProgress) => void;
}

export interface PullOptions extends ResolverOptions, TransferOptions {
  /** The image name to store (default: the normalised reference). */
  name?: string;
  labels?: Labels;
  /** Platforms to fetch (default: the daemon's). */
  platforms?: TransferPlatform[];
  /** Unpack into this snapshotter ('' for the daemon's default); false: do not unpack. */
  unpack?: false | { snapshotter?: string; platform?: TransferPlatform };
}

export interface PushOptions extends ResolverOptions, TransferOptions {
  platforms?: TransferPlatform[];
}

export interface ImportOptions extends TransferOptions {
  /** Names images that carry only a tag in the archive (`<name>:<tag>`). */
  baseName?: string;
  labels?: Labels;
  platforms?: TransferPlatform[];
  allPlatforms?: boolean;
  unpack?: false | { snapshotter?: string; platform?: TransferPlatform };
}

export interface ExportOptions extends TransferOptions {
  platforms?: TransferPlatform[];
  allPlatforms?: boolean;
  skipDockerManifest?: boolean;
}

const platformMsg = (p: TransferPlatform) => ({
  os: p.os,
  architecture: p.architecture,
  variant: p.variant ?? '',
});

/**
 * True when the daemon has no such service at all (containerd 1.6 has no Transfer or
 * Streaming), as opposed to a transfer it refused: the cue for a client-side fallback.
 */
export function isUnimplementedService(err: unknown): boolean {
  if (!isBerthError(err) || err.code !== 'ERR_NOT_IMPLEMENTED') return false;
  return /unknown service|does not implement|unimplemented method|unknown method/i.test(err.message);
}

/**
 * containerd.services.transfer.v1.Transfer with the Streaming service for progress,
 * credentials and archive bytes, as containerd 2's transfer proxy: the daemon pulls,
 * pushes, imports and exports while the client watches.
 */
export class RemoteTransfer {
  constructor(private readonly client: Client) {}

  private openStream(ctx: Context, prefix: string): Promise<ClientStream> {
    return ClientStream.open(
      this.client.stubFor(STREAMING_SERVICE),
      ctx,
      streamId(prefix),
      this.client.address,
    );
  }

  /** One Transfer call; progress (when asked for) is delivered before this resolves. */
  async transfer(ctx: Context, source: AnyMessage, destination: AnyMessage, opts: TransferOptions = {}) {
    let progress: ClientStream | undefined;
    let drained: Promise<void> | undefined;
    if (opts.onProgress) {
      progress = await this.openStream(ctx, 'progress');
      const p = progress;
      drained = (async () => {
        for (;;) {
          const m = await p.recv().catch(() => undefined);
          if (!m) return;
          if (typeNameOfUrl(m.typeUrl) !== `${T}Progress`) continue;
          const v = decodeAny<TransferProgress>(m);
          opts.onProgress!({
            event: v.event,
            name: v.name,
            parents: [...(v.parents ?? [])],
            progress: Number(v.progress),
            total: Number(v.total),
          });
        }
      })();
    }
    try {
      await unary(
        this.client.stubFor(TRANSFER_SERVICE),
        'Transfer',
        { source, destination, options: { progressStream: progress?.id ?? '' } },
        ctx,
        this.client.address,
      );
    } finally {
      if (progress) {
        // The daemon closes the progress stream before Transfer returns; give stragglers a moment.
        const timer = new Promise<void>((r) => setTimeout(r, 10_000).unref());
        await Promise.race([drained, timer]);
        progress.cancel();
      }
    }
  }

  private async resolver(ctx: Context, reference: string, opts: ResolverOptions, streams: ClientStream[]) {
    let authStream = '';
    if (opts.credentials) {
      const s = await this.openStream(ctx, 'creds');
      streams.push(s);
      authStream = s.id;
      const creds = opts.credentials;
      void (async () => {
        for (;;) {
          const m = await s.recv().catch(() => undefined);
          if (!m) return;
          const req = decodeAny<{ host: string; reference: string }>(m);
          const c = await creds(req.host, req.reference || reference).catch(() => undefined);
          const resp = c
            ? {
                authType: c.username ? 'CREDENTIALS' : 'REFRESH',
                username: c.username ?? '',
                secret: c.secret,
              }
            : { authType: 'NONE', username: '', secret: '' };
          await s.send(encodeAny(`${T}AuthResponse`, resp)).catch(() => undefined);
        }
      })();
    }
    return {
      authStream,
      headers: opts.headers ?? {},
      hostDir: opts.hostsDir ?? '',
      defaultScheme: opts.plainHttp ? 'http' : '',
    };
  }

  /** Pulls `reference` into the daemon's image store (and unpacks it unless told not to). */
  async pull(ctx: Context, reference: string, opts: PullOptions = {}): Promise<void> {
    const streams: ClientStream[] = [];
    try {
      const source = encodeAny(`${T}OCIRegistry`, {
        reference,
        resolver: await this.resolver(ctx, reference, opts, streams),
      });
      const unpack = opts.unpack === false ? undefined : (opts.unpack ?? {});
      const destination = encodeAny(`${T}ImageStore`, {
        name: opts.name ?? '',
        labels: opts.labels ?? {},
        platforms: (opts.platforms ?? []).map(platformMsg),
        unpacks: unpack
          ? [
              {
                platform: unpack.platform
                  ? platformMsg(unpack.platform)
                  : opts.platforms?.[0]
                    ? platformMsg(opts.platforms[0])
                    : null,
                snapshotter: unpack.snapshotter ?? '',
              },
            ]
          : [],
      });
      await this.transfer(ctx, source, destination, opts);
    } finally {
      for (const s of streams) s.cancel();
    }
  }

  /** Pushes the image `name` to `reference`. */
  async push(ctx: Context, name: string, reference: string, opts: PushOptions = {}): Promise<void> {
    const streams: ClientStream[] = [];
    try {
      const source = encodeAny(`${T}ImageStore`, {
        name,
        platforms: (opts.platforms ?? []).map(platformMsg),
      });
      const destination = encodeAny(`${T}OCIRegistry`, {
        reference,
        resolver: await this.resolver(ctx, reference, opts, streams),
      });
      await this.transfer(ctx, source, destination, opts);
    } finally {
      for (const s of streams) s.cancel();
    }
  }

  /** Sends an archive (OCI layout or docker save tar) to the daemon, which imports it. */
  async importArchive(ctx: Context, archive: Readable | AsyncIterable<Buffer>, opts: ImportOptions = {}) {
    const data = await this.openStream(ctx, 'import');
    const sending = sendWithWindow(data, archive);
    sending.catch(() => undefined);
    try {
      const unpack = opts.unpack === false || opts.unpack === undefined ? undefined : opts.unpack;
      await this.transfer(
        ctx,
        encodeAny(`${T}ImageImportStream`, { stream: data.id, mediaType: '', forceCompress: false }),
        encodeAny(`${T}ImageStore`, {
          name: opts.baseName ?? '',
          labels: opts.labels ?? {},
          platforms: (opts.platforms ?? []).map(platformMsg),
          allMetadata: opts.allPlatforms ?? false,
          unpacks: unpack
            ? [
                {
                  platform: unpack.platform ? platformMsg(unpack.platform) : null,
                  snapshotter: unpack.snapshotter ?? '',
                },
              ]
            : [],
        }),
        opts,
      );
      await sending;
    } finally {
      data.cancel();
    }
  }

  /** Receives an archive of the images `names` from the daemon into `out`. */
  async exportArchive(ctx: Context, names: string[], out: Writable, opts: ExportOptions = {}) {
    const data = await this.openStream(ctx, 'export');
    const receiving = receiveWithWindow(data, out);
    receiving.catch(() => undefined);
    try {
      await this.transfer(
        ctx,
        encodeAny(`${T}ImageStore`, { name: names[0] ?? '', exportImages: names.slice(1) }),
        encodeAny(`${T}ImageExportStream`, {
          stream: data.id,
          mediaType: '',
          platforms: (opts.platforms ?? []).map(platformMsg),
          allPlatforms: opts.allPlatforms ?? false,
          skipDockerManifest: opts.skipDockerManifest ?? false,
        }),
        opts,
      );
      await receiving;
    } finally {
      data.cancel();
    }
  }
}

const WINDOW = 4 << 20;
const CHUNK = 1 << 20;

/** Sends bytes as Data messages within the window the daemon grants, then ends our side. */
async function sendWithWindow(s: ClientStream, source: AsyncIterable<Buffer | string>): Promise<void> {
  let credit = 0;
  const nextCredit = async () => {
    for (;;) {
      const m = await s.recv();
      if (!m) throw new Error(`stream ${s.id}: the daemon stopped reading`);
      if (typeNameOfUrl(m.typeUrl) === `${T}WindowUpdate`) return decodeAny<{ update: number }>(m).update;
    }
  };
  for await (const raw of source) {
    const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
    let off = 0;
    while (off < chunk.length) {
      while (credit <= 0) credit += await nextCredit();
      const n = Math.min(credit, CHUNK, chunk.length - off);
      await s.send(encodeAny(`${T}Data`, { data: chunk.subarray(off, off + n) }));
      credit -= n;
      off += n;
    }
  }
  s.closeSend();
}

/** Grants the daemon windows and writes the Data it sends into `out`, ending it at EOF. */
async function receiveWithWindow(s: ClientStream, out: Writable): Promise<void> {
  let credit = 0;
  for (;;) {
    if (credit < WINDOW / 2) {
      await s.send(encodeAny(`${T}WindowUpdate`, { update: WINDOW }));
      credit += WINDOW;
    }
    const m = await s.recv();
    if (!m) break;
    if (typeNameOfUrl(m.typeUrl) !== `${T}Data`) continue;
    const { data } = decodeAny<{ data: Buffer }>(m);
    credit -= data.length;
    if (!out.write(data))
      await new Promise<void>((res, rej) => {
        out.once('drain', res);
        out.once('error', rej);
      });
  }
  await new Promise<void>((res, rej) => {
    out.once('error', rej);
    out.end(res);
  });
}
