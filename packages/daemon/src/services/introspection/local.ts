import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type FieldAdaptor, InvalidArgumentError, parseFilters, toGrpcStatus, type wire } from '@berth/api';
import type { PluginRecord } from '../../registry';

/** `ctr plugins ls` prints "skip" when the init error's message contains this. */
const SKIP_MARKER = 'skip plugin';

/** A plugin as containerd.services.introspection.v1.Plugin carries it. */
export function pluginMessage(p: PluginRecord): wire.introspection.Plugin {
  let initErr: wire.rpc.Status | undefined;
  if (p.state !== 'loaded') {
    if (p.state === 'skipped') {
      const reason = p.error?.message ?? '';
      const message = reason.includes(SKIP_MARKER)
        ? reason
        : reason
          ? `${reason}: ${SKIP_MARKER}`
          : SKIP_MARKER;
      initErr = { code: toGrpcStatus(new Error(message)).code, message, details: [] };
    } else {
      const st = toGrpcStatus(p.error ?? new Error('unknown error'));
      initErr = { code: st.code, message: st.details, details: [] };
    }
  }
  return {
    type: p.type,
    id: p.id,
    requires: [...p.requires],
    platforms: p.platforms.map((x) => ({ os: x.os, architecture: x.architecture, variant: x.variant ?? '' })),
    exports: { ...p.exports },
    capabilities: [...p.capabilities],
    initErr,
  };
}

/**
 * Filters over `type`, `id` (as containerd), and also `capabilities.<name>` and
 * `platforms.<os/arch[/variant]>`, present when the plugin has that capability or platform.
 */
function adaptPlugin(p: wire.introspection.Plugin): FieldAdaptor {
  return (path) => {
    switch (path[0]) {
      case 'type':
        return p.type || undefined;
      case 'id':
        return p.id || undefined;
      case 'capabilities': {
        const want = path.slice(1).join('.');
        return want !== '' && p.capabilities.includes(want) ? want : undefined;
      }
      case 'platforms': {
        const want = path.slice(1).join('.');
        const names = p.platforms.map((x) => [x.os, x.architecture, x.variant].filter(Boolean).join('/'));
        return want !== '' && names.includes(want) ? want : undefined;
      }
      default:
        return undefined;
    }
  };
}

/** The introspection service: the plugin list and the server's identity. */
export class IntrospectionLocal {
  private uuid: string | undefined;

  constructor(
    private readonly plugins: () => readonly PluginRecord[],
    /** Directory holding the persisted `uuid` file. */
    private root: string,
  ) {}

  /** containerd keeps the uuid under the gRPC plugin's root; that plugin moves it there. */
  setRoot(root: string): void {
    this.root = root;
    this.uuid = undefined;
  }

  list(filters: readonly string[] = []): wire.introspection.Plugin[] {
    let filter: ReturnType<typeof parseFilters>;
    try {
      filter = parseFilters(filters);
    } catch (err) {
      throw new InvalidArgumentError((err as Error).message, { cause: err });
    }
    return this.plugins()
      .map(pluginMessage)
      .filter((p) => filter.match(adaptPlugin(p)));
  }

  /** The server's uuid, generated on first use and persisted so it survives restarts. */
  serverUuid(): string {
    if (this.uuid) return this.uuid;
    const path = join(this.root, 'uuid');
    try {
      const text = readFileSync(path, 'utf8').trim();
      if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(text)) {
        throw new InvalidArgumentError(`server uuid file ${path}: invalid uuid "${text}"`);
      }
      this.uuid = text;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const id = randomUUID();
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileSync(path, id, { mode: 0o644 });
      this.uuid = id;
    }
    return this.uuid;
  }
}

/**
 * The pid namespace of this process as containerd reports it (ServerResponse.pidns is a
 * uint64): the inode of `/proc/self/ns/pid`, 0 when unknown.
 */
export function pidNamespace(): number {
  try {
    return statSync('/proc/self/ns/pid').ino;
  } catch {
    return 0;
  }
}
