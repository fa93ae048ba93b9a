import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from '@berth/api';
import {
  directoryReader,
  type GroupEntry,
  type PasswdEntry,
  parseGroup,
  parsePasswd,
  type RootfsReader,
} from './rootfs';
import { ensureProcess, type SpecContext, type SpecOpt } from './spec';
import type { Process, Spec } from './types';

// runc refuses ids above MaxInt32, so containerd treats larger numbers as names.
const MAX_ID = 2 ** 31 - 1;

function parseId(field: string): number | undefined {
  if (!/^[+-]?\d+$/.test(field)) return undefined;
  const n = Number(field);
  return n >= 0 && n <= MAX_ID ? n : undefined;
}

function readerFor(spec: Spec, ctx: SpecContext): RootfsReader | undefined {
  if (typeof ctx.rootfs === 'function') return ctx.rootfs;
  if (typeof ctx.rootfs === 'string') return directoryReader(ctx.rootfs);
  const root = spec.root?.path;
  return root?.startsWith('/') ? directoryReader(root) : undefined;
}

function requireReader(spec: Spec, ctx: SpecContext, what: string): RootfsReader {
  const reader = readerFor(spec, ctx);
  if (!reader) {
    throw new FailedPreconditionError(
      `resolving ${what} needs the container's root filesystem (give SpecContext.rootfs or an absolute root.path)`,
    );
  }
  return reader;
}

async function readPasswd(reader: RootfsReader): Promise<PasswdEntry[] | undefined> {
  const data = await reader('/etc/passwd');
  return data && parsePasswd(data.toString('utf8'));
}

async function readGroup(reader: RootfsReader): Promise<GroupEntry[] | undefined> {
  const data = await reader('/etc/group');
  return data && parseGroup(data.toString('utf8'));
}

async function lookupUser(reader: RootfsReader, name: string): Promise<PasswdEntry> {
  const users = await readPasswd(reader);
  if (!users) throw new NotFoundError(`user "${name}": the container has no /etc/passwd`);
  const user = users.find((u) => u.name === name);
  if (!user) throw new NotFoundError(`user "${name}" not found in the container's /etc/passwd`);
  return user;
}

async function lookupGroup(reader: RootfsReader, name: string): Promise<number> {
  const groups = await readGroup(reader);
  if (!groups) throw new NotFoundError(`group "${name}": the container has no /etc/group`);
  const group = groups.find((g) => g.name === name);
  if (!group) throw new NotFoundError(`group "${name}" not found in the container's /etc/group`);
  return group.gid;
}

// The primary group is always among the additional ones, first unless already listed.
function ensureAdditionalGids(process: Process): void {
  const gids = process.user.additionalGids ?? [];
  if (!gids.includes(process.user.gid)) process.user.additionalGids = [process.user.gid, ...gids];
}

function setIds(process: Process, uid: number, gid: number): void {
  process.user.uid = uid;
  process.user.gid = gid;
  delete process.user.additionalGids;
}

/** Sets uid and gid as given, without looking anything up. */
export function withUIDGID(uid: number, gid: number): SpecOpt {
  return (spec) => {
    const process = ensureProcess(spec);
    setIds(process, uid, gid);
    ensureAdditionalGids(process);
  };
}

/**
 * Sets `uid` and its primary group from the container's /etc/passwd; gid 0 when the file or
 * the entry is absent. Without a readable root filesystem it behaves as if the file were
 * absent (containerd refuses instead).
 */
export function withUserId(uid: number): SpecOpt {
  return async (spec, ctx) => {
    const process = ensureProcess(spec);
    const reader = readerFor(spec, ctx);
    const entry = reader && (await readPasswd(reader))?.find((u) => u.uid === uid);
    setIds(process, uid, entry ? entry.gid : 0);
    ensureAdditionalGids(process);
  };
}

/** Sets the uid and gid of user `name` from the container's /etc/passwd; NotFound if absent. */
export function withUsername(name: string): SpecOpt {
  return async (spec, ctx) => {
    const process = ensureProcess(spec);
    const user = await lookupUser(requireReader(spec, ctx, `user "${name}"`), name);
    setIds(process, user.uid, user.gid);
    ensureAdditionalGids(process);
  };
}

/**
 * The user of an image config or of `--user`: `user`, `uid`, `user:group`, `uid:gid`,
 * `uid:group` or `user:gid`, names resolved in the container's /etc/passwd and /etc/group
 * (containerd's WithUser).
 */
export function withUser(user: string): SpecOpt {
  return async (spec, ctx) => {
    const parts = user.split(':');
    if (parts.length > 2) throw new InvalidArgumentError(`invalid USER value "${user}"`);
    if (parts.length === 1) {
      const uid = parseId(user);
      await (uid === undefined ? withUsername(user) : withUserId(uid))(spec, ctx);
      return;
    }
    const [userPart, groupPart] = parts as [string, string];
    let uid = parseId(userPart);
    let gid = parseId(groupPart);
    if (uid === undefined || gid === undefined) {
      const reader = requireReader(spec, ctx, `user "${user}"`);
      if (uid === undefined) uid = (await lookupUser(reader, userPart)).uid;
      if (gid === undefined) gid = await lookupGroup(reader, groupPart);
    }
    const process = ensureProcess(spec);
    setIds(process, uid, gid);
    ensureAdditionalGids(process);
  };
}

/**
 * The supplementary groups of `user` (a name or a uid) from the container's /etc/group: the
 * groups listing it as a member, besides the primary gid (containerd's WithAdditionalGIDs).
 * Without a readable root filesystem only the primary gid is listed (containerd refuses).
 */
export function withAdditionalGIDs(user: string): SpecOpt {
  return async (spec, ctx) => {
    const process = ensureProcess(spec);
    delete process.user.additionalGids;
    const reader = readerFor(spec, ctx);
    if (!reader) {
      ensureAdditionalGids(process);
      return;
    }
    try {
      let name = user;
      if (/^[+-]?\d+$/.test(user)) {
        const uid = Number(user);
        const entry = (await readPasswd(reader))?.find((u) => u.uid === uid);
        if (!entry) return;
        name = entry.name;
      }
      const groups = await readGroup(reader);
      if (!groups) return;
      const gids = groups.filter((g) => g.name !== name && g.members.includes(name)).map((g) => g.gid);
      if (gids.length > 0) process.user.additionalGids = gids;
    } finally {
      ensureAdditionalGids(process);
    }
  };
}

/** Adds groups (names from the container's /etc/group, or numbers) to the additional gids. */
export function withAppendAdditionalGroups(...groups: string[]): SpecOpt {
  return async (spec, ctx) => {
    const process = ensureProcess(spec);
    const gids: number[] = [];
    for (const group of groups) {
      const gid = parseId(group);
      gids.push(gid ?? (await lookupGroup(requireReader(spec, ctx, `group "${group}"`), group)));
    }
    process.user.additionalGids = [...(process.user.additionalGids ?? []), ...gids];
    ensureAdditionalGids(process);
  };
}
