import { type Envelope, formatRFC3339Nano, fromTimestamp, NanoDate, type wire } from '@berth/api';
import type { CommandSpec } from '../args';
import { api, type Globals, print } from '../runtime';

/** Go's time.Time.String() of a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`. */
export function goTimeString(date: Date, nanos?: number): string {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.mmmZ
  const ns = nanos ?? NanoDate.from(date).nanosecond;
  const frac = ns > 0 ? `.${String(ns).padStart(9, '0').replace(/0+$/, '')}` : '';
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${frac} +0000 UTC`;
}

const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** The slice of a protobufjs reflection object this printer reads. */
interface FieldInfo {
  name: string;
  id: number;
  type: string;
  map?: boolean;
  repeated?: boolean;
  resolvedType: TypeInfo | EnumInfo | null;
}
interface TypeInfo {
  fullName: string;
  fieldsArray: FieldInfo[];
}
interface EnumInfo {
  values: Record<string, number>;
}
const isType = (t: unknown): t is TypeInfo => !!t && Array.isArray((t as TypeInfo).fieldsArray);

const rfc3339Nano = (t: wire.protobuf.Timestamp): string => formatRFC3339Nano(fromTimestamp(t));

const ZERO_TIME = '0001-01-01T00:00:00Z';
const OMIT = Symbol('omit');

/** One value of a field as encoding/json writes the gogo Go type; OMIT where omitempty drops it. */
function goField(f: FieldInfo, v: unknown): unknown {
  const rt = f.resolvedType;
  if (f.map) {
    const m = (v ?? {}) as Record<string, unknown>;
    const keys = Object.keys(m).sort();
    if (keys.length === 0) return OMIT;
    return Object.fromEntries(
      keys.map((k) => [k, goScalar({ ...f, map: false, repeated: false }, m[k], false)]),
    );
  }
  if (f.repeated) {
    const list = (v ?? []) as unknown[];
    return list.length ? list.map((x) => goScalar(f, x, false)) : OMIT;
  }
  // containerd's timestamps are non-nullable time.Time: never omitted.
  if (isType(rt) && rt.fullName === '.google.protobuf.Timestamp') {
    return v ? rfc3339Nano(v as wire.protobuf.Timestamp) : ZERO_TIME;
  }
  return goScalar(f, v, true);
}

function goScalar(f: FieldInfo, v: unknown, omitEmpty: boolean): unknown {
  const rt = f.resolvedType;
  if (isType(rt)) {
    if (v === null || v === undefined) return omitEmpty ? OMIT : null;
    if (rt.fullName === '.google.protobuf.Timestamp') return rfc3339Nano(v as wire.protobuf.Timestamp);
    return goMessage(v as Record<string, unknown>, rt);
  }
  if (rt && 'values' in rt) {
    const n = typeof v === 'number' ? v : (rt.values[String(v)] ?? 0);
    return omitEmpty && n === 0 ? OMIT : n;
  }
  if (f.type === 'bytes') {
    const b = v ? Buffer.from(v as Uint8Array) : Buffer.alloc(0);
    return omitEmpty && b.length === 0 ? OMIT : b.toString('base64');
  }
  if (omitEmpty && (v === '' || v === 0 || v === false || v === null || v === undefined)) return OMIT;
  return v ?? null;
}

/** A message as encoding/json writes its gogo struct: fields in proto order, proto names. */
function goMessage(obj: Record<string, unknown>, type: TypeInfo): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of [...type.fieldsArray].sort((a, b) => a.id - b.id)) {
    (f as unknown as { resolve?: () => void }).resolve?.();
    const v = goField(f, obj[f.name]);
    if (v !== OMIT) out[snake(f.name)] = v;
  }
  return out;
}

/** encoding/json output of a decoded event: compact, with <, > and & escaped as Go does. */
export function goJson(event: Record<string, unknown>, typeName: string): string {
  const type = api().protoType(typeName) as unknown as TypeInfo;
  return JSON.stringify(goMessage(event, type)).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** One line as ctr prints it: `<time> <namespace> <topic> <event json>`. */
export function formatEnvelope(env: Envelope, decoded: Record<string, unknown>): string {
  const json = goJson(decoded, api().typeNameOfUrl(env.event.typeUrl));
  return `${goTimeString(env.timestamp)} ${env.namespace} ${env.topic} ${json}\n`;
}

export const eventsCommand: CommandSpec<Globals> = {
  name: 'events',
  aliases: ['event'],
  summary: 'display events as the daemon publishes them',
  argsUsage: '[<filter>...]',
  description:
    'Stream events from every namespace until interrupted. Filters use containerd syntax over topic, namespace and ' +
    "event.<field>, e.g. 'topic~=\"^/images/\"' or 'namespace==default,event.id==web' (a value starting with / must be quoted).",
  async run({ args, global: g }) {
    const { client, ctx } = g.session();
    const { decodeAny } = api();
    for await (const env of client.events.subscribe(ctx, args)) {
      if (g.format === 'json') {
        let event: unknown;
        try {
          event = JSON.parse(goJson(decodeAny(env.event), api().typeNameOfUrl(env.event.typeUrl)));
        } catch {
          event = { type_url: env.event.typeUrl, value: env.event.value.toString('base64') };
        }
        print(
          g,
          `${JSON.stringify({ timestamp: env.timestamp.toISOString(), namespace: env.namespace, topic: env.topic, event })}\n`,
        );
        continue;
      }
      let line: string;
      try {
        line = formatEnvelope(env, decodeAny(env.event));
      } catch (err) {
        // As ctr: an event it cannot decode is reported and skipped.
        g.io.stderr.write(
          `berth: cannot decode the event on ${env.topic} (${env.event.typeUrl}): ${(err as Error).message}\n`,
        );
        continue;
      }
      print(g, line);
    }
  },
};
