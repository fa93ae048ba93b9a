import type { AnyValue } from '../containers';
import type { Any } from '../gen/google/protobuf/any';

/** An Any off the wire as berth's AnyValue (its bytes a Buffer); undefined when absent. */
export function anyFromWire(any: Any | null | undefined): AnyValue | undefined {
  return any ? { typeUrl: any.typeUrl ?? '', value: Buffer.from(any.value ?? []) } : undefined;
}

/** Each value of a map of Anys (a container's extensions) through anyFromWire. */
export function anyMapFromWire(map: Record<string, Any> | null | undefined): Record<string, AnyValue> {
  const out: Record<string, AnyValue> = {};
  for (const [k, v] of Object.entries(map ?? {})) out[k] = anyFromWire(v)!;
  return out;
}
