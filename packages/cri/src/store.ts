import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from '@berth/api';

/**
 * Names the kubelet gives pods and containers are unique: a second RunPodSandbox or
 * CreateContainer with a name in use is AlreadyExists naming the holder, as containerd's
 * name registrar answers.
 */
export class NameIndex {
  private readonly byName = new Map<string, string>();

  reserve(name: string, id: string): void {
    if (name === '') throw new InvalidArgumentError('name must not be empty');
    const holder = this.byName.get(name);
    if (holder !== undefined && holder !== id)
      throw new AlreadyExistsError(`name "${name}" is reserved for "${holder}"`);
    this.byName.set(name, id);
  }

  release(name: string): void {
    this.byName.delete(name);
  }

  holder(name: string): string | undefined {
    return this.byName.get(name);
  }
}

/**
 * The in-memory index of one kind of CRI object (pods or containers), keyed by id; an id
 * may be given by a unique prefix, as crictl and containerd's truncindex allow.
 */
export class RecordIndex<T extends { id: string }> {
  private readonly byId = new Map<string, T>();

  constructor(private readonly kind: string) {}

  add(record: T): void {
    this.byId.set(record.id, record);
  }

  delete(id: string): void {
    this.byId.delete(id);
  }

  /** The record with this id or unique id prefix; NotFound naming the id otherwise. */
  get(idOrPrefix: string): T {
    const found = this.find(idOrPrefix);
    if (!found) throw new NotFoundError(`${this.kind} "${idOrPrefix}" not found`);
    return found;
  }

  /** Like get, undefined when nothing matches; InvalidArgument when the prefix is ambiguous. */
  find(idOrPrefix: string): T | undefined {
    if (idOrPrefix === '') throw new InvalidArgumentError(`${this.kind} id must not be empty`);
    const exact = this.byId.get(idOrPrefix);
    if (exact) return exact;
    let match: T | undefined;
    for (const [id, r] of this.byId) {
      if (!id.startsWith(idOrPrefix)) continue;
      if (match) throw new InvalidArgumentError(`${this.kind} id prefix "${idOrPrefix}" is ambiguous`);
      match = r;
    }
    return match;
  }

  list(): T[] {
    return [...this.byId.values()];
  }
}
