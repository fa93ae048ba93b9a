/** A container in this shim: its init process, its exec'd processes, its cgroup. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { AlreadyExistsError, NotFoundError } from '@berth/api';
import type { Cgroup } from './cgroups';
import type { ExecProcess, InitProcess, Process } from './process';
import type { Runc } from './runc';

export class Container {
  readonly execs = new Map<string, ExecProcess>();
  private readonly reserved = new Set<string>();
  cgroup: Cgroup | undefined;
  /** OOM kills already reported. */
  oomKills = 0;

  constructor(
    readonly id: string,
    readonly bundle: string,
    readonly namespace: string,
    readonly runc: Runc,
    readonly init: InitProcess,
  ) {}

  process(execId: string): Process {
    if (execId === '') return this.init;
    const p = this.execs.get(execId);
    if (p === undefined) throw new NotFoundError(`process does not exist ${execId}`);
    return p;
  }

  exec(execId: string): ExecProcess {
    const p = this.execs.get(execId);
    if (p === undefined) throw new NotFoundError(`process does not exist ${execId}`);
    return p;
  }

  all(): Process[] {
    return [this.init, ...this.execs.values()];
  }

  /** Holds an exec id while its process is being set up; AlreadyExists when taken. */
  reserveExec(execId: string): () => void {
    if (this.execs.has(execId) || this.reserved.has(execId)) throw new AlreadyExistsError(`id ${execId}`);
    this.reserved.add(execId);
    return () => this.reserved.delete(execId);
  }
}

/**
 * Whether the init's exit must be followed by killing every process of the container:
 * true unless the container has its own pid namespace (whose processes die with init).
 */
export function shouldKillAllOnExit(bundle: string): boolean {
  try {
    const spec = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8')) as {
      linux?: { namespaces?: { type?: string; path?: string }[] };
    };
    for (const ns of spec.linux?.namespaces ?? []) {
      if (ns.type === 'pid' && !ns.path) return false;
    }
  } catch {
    // unreadable spec: be safe
  }
  return true;
}
