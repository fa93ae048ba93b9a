/**
 * The one place berth serves its containerd-compatible .proto files (packages/api/proto).
 * Messages are encoded by the codecs ts-proto generated from them into src/gen (see
 * scripts/generate.js): gRPC service definitions, encodeMessage/decodeMessage and Anys all
 * go through those, so every package sees the same JS shapes: camelCase fields, int64 as
 * number, bytes as Buffer, enums as their names, Timestamp as {seconds, nanos}, Any as
 * {typeUrl, value}, unset message fields as undefined.
 * protobufjs reflection (protoType, protoService) remains for the ttrpc transport and for
 * printing events field by field.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
// grpc-js and proto-loader cost ~100 ms to load; processes that only use protobufjs types
// (the shim, ttrpc peers) never need them, so they are required on first gRPC use.
import type { BinaryWriter } from '@bufbuild/protobuf/wire';
import type * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';
import { InvalidArgumentError, NotFoundError } from './errors';
import type * as gen from './gen';

/** Directory holding the .proto tree; the same relative place from src/ and dist/. */
export const PROTO_ROOT = path.join(__dirname, '..', 'proto');

/** The conversion protobufjs Types apply when decoding (ttrpc), matching the generated codecs. */
export const CONVERSION_OPTIONS: protobuf.IConversionOptions = {
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

/** Every gRPC service in the proto tree (the shim's ttrpc services included). */
export const SERVICES: readonly string[] = Object.freeze([
  'containerd.services.containers.v1.Containers',
  'containerd.services.content.v1.Content',
  'containerd.services.diff.v1.Diff',
  'containerd.services.events.v1.Events',
  'containerd.services.images.v1.Images',
  'containerd.services.introspection.v1.Introspection',
  'containerd.services.leases.v1.Leases',
  'containerd.services.namespaces.v1.Namespaces',
  'containerd.services.snapshots.v1.Snapshots',
  'containerd.services.streaming.v1.Streaming',
  'containerd.services.tasks.v1.Tasks',
  'containerd.services.transfer.v1.Transfer',
  'containerd.services.version.v1.Version',
  // ttrpc services: the shim's task API and the events a shim forwards.
  'containerd.services.events.ttrpc.v1.Events',
  'containerd.task.v2.Task',
  // The standard gRPC health service berthd serves beside containerd's.
  'grpc.health.v1.Health',
  // Kubernetes' CRI, served by the io.containerd.grpc.v1.cri plugin.
  'runtime.v1.ImageService',
  'runtime.v1.RuntimeService',
  // berth's own ttrpc service on its shim, beside the task API (the CRI log's reopen).
  'berth.shim.v1.Log',
]);

/** Lists every .proto file under dir, as paths relative to dir with '/' separators. */
export function listProtoFiles(dir: string = PROTO_ROOT): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const entry of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith('.proto')) out.push(child);
    }
  };
  walk('');
  return out.sort();
}

/**
 * Parses every .proto file under dir into one resolved protobufjs Root. Imports resolve
 * against dir first; google/protobuf well-known types come bundled with protobufjs.
 */
export function loadProtoRoot(dir: string = PROTO_ROOT, options: protobuf.IParseOptions = {}): protobuf.Root {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    if (path.isAbsolute(target)) return target;
    return path.join(dir, target);
  };
  const parse = { keepCase: false, ...options };
  root.loadSync(listProtoFiles(dir), parse);
  if (!parse.keepCase) camelCaseBundledTypes(root);
  root.resolveAll();
  return root;
}

/**
 * protobufjs injects its bundled google/protobuf definitions without applying
 * keepCase:false, which would leave Any as {type_url, value} and silently drop a
 * `typeUrl` key on encode. Rename those fields so every message reads camelCase.
 * Field numbers, and so the wire, are unchanged.
 */
function camelCaseBundledTypes(root: protobuf.Root): void {
  const ns =
    root.nested?.google instanceof protobuf.Namespace ? root.nested.google.nested?.protobuf : undefined;
  if (!(ns instanceof protobuf.Namespace)) return;
  const visit = (n: protobuf.NamespaceBase): void => {
    for (const child of n.nestedArray) {
      if (child instanceof protobuf.Type) {
        for (const field of [...child.fieldsArray]) {
          if (!field.name.includes('_') || field instanceof protobuf.MapField) continue;
          const renamed = new protobuf.Field(
            protobuf.util.camelCase(field.name),
            field.id,
            field.type,
            field.repeated
              ? 'repeated'
              : field.required
                ? 'required'
                : field.optional
                  ? 'optional'
                  : undefined,
            undefined,
            field.options,
          );
          const oneof = field.partOf;
          if (oneof) oneof.remove(field);
          child.remove(field);
          child.add(renamed);
          if (oneof) oneof.add(renamed);
        }
      }
      if (child instanceof protobuf.Namespace || child instanceof protobuf.Type) visit(child);
    }
  };
  visit(ns);
}

/**
 * The build writes the parsed tree (fix-ups applied) here, next to the compiled proto.js:
 * loading it takes a fraction of parsing the .proto files at every process start.
 * Absent when running from src (jest), so tests parse the .proto files.
 */
export const PROTO_TREE_FILE = path.join(__dirname, 'proto-tree.json');

/** What the build writes to PROTO_TREE_FILE: the tree and the hash of the files it came from. */
export interface ProtoTreeJSON {
  /** protoTreeHash() of the directory the tree was parsed from. */
  hash: string;
  /** protobufjs Root.toJSON() of loadProtoRoot(). */
  root: protobuf.INamespace;
}

/** A sha256 over every .proto file's relative path and bytes, to tell a stale tree file. */
export function protoTreeHash(dir: string = PROTO_ROOT): string {
  const hash = createHash('sha256');
  for (const file of listProtoFiles(dir)) {
    hash.update(`${file}\0`);
    hash.update(fs.readFileSync(path.join(dir, file)));
    hash.update('\0');
  }
  return hash.digest('hex');
}

/** Parses the tree under dir into the JSON form the build writes to PROTO_TREE_FILE. */
export function buildProtoTree(dir: string = PROTO_ROOT): ProtoTreeJSON {
  return { hash: protoTreeHash(dir), root: loadProtoRoot(dir).toJSON() };
}

/**
 * Reads a tree file written by the build; undefined when it is missing, unreadable or
 * was built from other .proto files than those now under dir (a stale build).
 */
export function readProtoTree(
  file: string = PROTO_TREE_FILE,
  dir: string = PROTO_ROOT,
): ProtoTreeJSON | undefined {
  let tree: ProtoTreeJSON;
  try {
    tree = JSON.parse(fs.readFileSync(file, 'utf8')) as ProtoTreeJSON;
  } catch {
    return undefined;
  }
  if (tree === null || typeof tree !== 'object' || typeof tree.hash !== 'string') return undefined;
  if (tree.root === null || typeof tree.root !== 'object') return undefined;
  return tree.hash === protoTreeHash(dir) ? tree : undefined;
}

/** A resolved Root from a tree's JSON; the same objects loadProtoRoot would build. */
export function protoRootFromJSON(json: protobuf.INamespace): protobuf.Root {
  const root = protobuf.Root.fromJSON(json);
  root.resolveAll();
  return root;
}

let cachedRoot: protobuf.Root | undefined;
const grpcDefinitions = new Map<string, grpc.ServiceDefinition>();
const clientConstructors = new Map<string, grpc.ServiceClientConstructor>();

function root(): protobuf.Root {
  if (cachedRoot === undefined) {
    const tree = readProtoTree();
    cachedRoot = tree ? protoRootFromJSON(tree.root) : loadProtoRoot();
  }
  return cachedRoot;
}

/**
 * True when type belongs to the tree this module serves (protoType would return it).
 * Never loads the tree: a type cannot come from a tree not loaded yet.
 */
export function isProtoTreeType(type: protobuf.Type): boolean {
  return cachedRoot !== undefined && type.root === cachedRoot;
}

const stripDot = (name: string): string => (name.startsWith('.') ? name.slice(1) : name);

/** A message codec ts-proto generated: encode to a writer, decode bytes, fill a partial value. */
export type MessageCodec<T = any> = gen.MessageType<T>;

let generated: typeof gen | undefined;

/** The generated module, loaded on first use: processes that never encode (a shim idle) skip it. */
function genModule(): typeof gen {
  generated ??= require('./gen') as typeof gen;
  return generated;
}

/** The generated codec for a full message name, e.g. 'containerd.types.Mount'. */
export function messageCodec<T = any>(fullMessageName: string): MessageCodec<T> {
  const codec = genModule().messageTypeRegistry.get(stripDot(fullMessageName));
  if (codec === undefined) {
    throw new NotFoundError(`message type ${JSON.stringify(fullMessageName)}: not found`);
  }
  return codec as MessageCodec<T>;
}

let Writer: typeof BinaryWriter | undefined;

/** Node's own UTF-8 encoder: faster than the TextEncoder the writer uses by default for short strings. */
const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8');

/** A writer to encode one message into. */
function newWriter(): BinaryWriter {
  Writer ??= (require('@bufbuild/protobuf/wire') as typeof import('@bufbuild/protobuf/wire')).BinaryWriter;
  return new Writer(utf8);
}

/** A writer's bytes as a Buffer over the same memory: grpc-js wants a Buffer, a copy would cost. */
function finish(writer: { finish(): Uint8Array }): Buffer {
  const bytes = writer.finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Encodes a value with a generated codec. Handlers answer with partial objects (unset
 * fields left out, null for an absent message), which ts-proto's encoders do not accept,
 * so the value goes through fromPartial first, as protobufjs' fromObject did.
 */
function serializer<T>(codec: MessageCodec<T>): (value: T) => Buffer {
  return (value) => finish(codec.encode(codec.fromPartial(value as never), newWriter()));
}

function deserializer<T>(codec: MessageCodec<T>, typeName: string): (bytes: Buffer) => T {
  return (bytes) => {
    try {
      return codec.decode(bytes);
    } catch (err) {
      throw new InvalidArgumentError(`decode ${typeName}: ${(err as Error).message}`, { cause: err });
    }
  };
}

/**
 * The grpc-js service definition for a full service name, e.g. 'containerd.services.content.v1.Content',
 * built from the generated one. Methods are keyed by their proto names (Write) with the
 * camelCase name (write) as originalName, as proto-loader had them, so implementations and
 * clients may use either.
 */
export function grpcService(fullServiceName: string): grpc.ServiceDefinition {
  const name = stripDot(fullServiceName);
  let def = grpcDefinitions.get(name);
  if (def === undefined) {
    const services: Readonly<Record<string, gen.ServiceDescription>> = genModule().serviceDefinitions;
    const generic = Object.hasOwn(services, name) ? services[name] : undefined;
    if (generic === undefined) {
      throw new NotFoundError(`grpc service ${JSON.stringify(fullServiceName)}: not found`);
    }
    const built: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
    for (const [originalName, m] of Object.entries(generic.methods)) {
      const req = m.requestType as MessageCodec;
      const res = m.responseType as MessageCodec;
      built[m.name] = {
        path: `/${name}/${m.name}`,
        requestStream: m.requestStream,
        responseStream: m.responseStream,
        originalName,
        requestSerialize: serializer(req),
        requestDeserialize: deserializer(req, req.$type),
        responseSerialize: serializer(res),
        responseDeserialize: deserializer(res, res.$type),
      } as grpc.MethodDefinition<unknown, unknown>;
    }
    def = built;
    grpcDefinitions.set(name, def);
  }
  return def;
}

/** A grpc-js client class for a full service name; instantiate with (address, credentials). */
export function grpcClientConstructor(fullServiceName: string): grpc.ServiceClientConstructor {
  const name = stripDot(fullServiceName);
  let ctor = clientConstructors.get(name);
  if (ctor === undefined) {
    const grpcJs = require('@grpc/grpc-js') as typeof grpc;
    ctor = grpcJs.makeClientConstructor(grpcService(name), name);
    clientConstructors.set(name, ctor);
  }
  return ctor;
}

/**
 * Finds an object by its exact full name. protobufjs's own lookup also tries partial
 * and relative matches, which would let 'Mount' or 'types.Mount' resolve by accident.
 */
function lookupExact(fullName: string): protobuf.ReflectionObject | null {
  const name = stripDot(fullName);
  if (name === '') return null;
  let current: protobuf.ReflectionObject = root();
  for (const part of name.split('.')) {
    const nested: Record<string, protobuf.ReflectionObject> | undefined = (current as protobuf.Namespace)
      .nested;
    if (nested === undefined || !Object.hasOwn(nested, part)) return null;
    current = nested[part];
  }
  return current;
}

/** The protobufjs Type for a full message name, e.g. 'containerd.events.ContainerCreate'. */
export function protoType(fullMessageName: string): protobuf.Type {
  const found = lookupExact(fullMessageName);
  if (!(found instanceof protobuf.Type)) {
    throw new NotFoundError(`message type ${JSON.stringify(fullMessageName)}: not found`);
  }
  return found;
}

/** A protobufjs Service for a full service name (used by the ttrpc transport). */
export function protoService(fullServiceName: string): protobuf.Service {
  const found = lookupExact(fullServiceName);
  if (!(found instanceof protobuf.Service)) {
    throw new NotFoundError(`service ${JSON.stringify(fullServiceName)}: not found`);
  }
  return found;
}

/**
 * Rejects keys the message type does not define, so a misspelt field fails loudly
 * instead of silently encoding as its default. Reads the field table generated with the codecs.
 */
function checkKnownFields(typeName: string, value: unknown, where: string): void {
  const { messageFields, enumValues } = genModule();
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) {
    throw new InvalidArgumentError(`${where}: expected an object for ${typeName}`);
  }
  // A Date has no own keys and would silently encode as the zero timestamp.
  if (value instanceof Date) {
    throw new InvalidArgumentError(`${where}: expected {seconds, nanos} for ${typeName}, got a Date`);
  }
  const fields = messageFields[typeName];
  if (fields === undefined || typeName === 'google.protobuf.Any') return;
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const kind = Object.hasOwn(fields, key) ? fields[key] : undefined;
    if (kind === undefined) {
      throw new InvalidArgumentError(`${where}: unknown field ${JSON.stringify(key)} in ${typeName}`);
    }
    if (child === null || child === undefined) continue;
    const isMap = kind.startsWith('{}');
    const repeated = kind.startsWith('*');
    const inner = isMap ? kind.slice(2) : repeated ? kind.slice(1) : kind;
    const at = `${where}.${key}`;
    const values: [string, unknown][] = isMap
      ? Object.entries(child as Record<string, unknown>).map(([k, v]) => [`${at}[${k}]`, v])
      : repeated && Array.isArray(child)
        ? child.map((v, i) => [`${at}[${i}]`, v])
        : [[at, child]];
    if (inner.startsWith('#')) {
      const names = enumValues[inner.slice(1)] ?? [];
      for (const [, v] of values) {
        if (typeof v === 'string' && !names.includes(v)) {
          throw new InvalidArgumentError(`${at}: unknown ${inner.slice(1)} value ${JSON.stringify(v)}`);
        }
      }
    } else if (inner.startsWith('.')) {
      for (const [w, v] of values) checkKnownFields(inner.slice(1), v, w);
    }
  }
}

/** Encodes a plain object (the generated codecs' JS shape, fields may be left out) as the named message. */
export function encodeMessage(typeName: string, value: object): Buffer {
  const codec = messageCodec(typeName);
  checkKnownFields(codec.$type, value, 'message');
  try {
    return finish(codec.encode(codec.fromPartial(value as never), newWriter()));
  } catch (err) {
    throw new InvalidArgumentError(`encode ${stripDot(typeName)}: ${(err as Error).message}`, { cause: err });
  }
}

/** Decodes bytes of the named message into a plain object (the generated codecs' JS shape). */
export function decodeMessage<T = Record<string, unknown>>(typeName: string, bytes: Uint8Array): T {
  const codec = messageCodec<T>(typeName);
  try {
    return codec.decode(bytes);
  } catch (err) {
    throw new InvalidArgumentError(`decode ${stripDot(typeName)}: ${(err as Error).message}`, { cause: err });
  }
}

/** google.protobuf.Any as the generated codecs shape it: {typeUrl, value}. */
export type AnyMessage = gen.protobuf.Any;

/** The message name an Any's type URL refers to ('type.googleapis.com/a.B' and 'a.B' alike). */
export function typeNameOfUrl(typeUrl: string): string {
  const slash = typeUrl.lastIndexOf('/');
  return slash === -1 ? typeUrl : typeUrl.slice(slash + 1);
}

/**
 * Packs a plain object into an Any. The type URL defaults to the bare full message
 * name, which is what containerd's typeurl produces for its own messages.
 */
export function encodeAny(typeName: string, value: object, typeUrl: string = stripDot(typeName)): AnyMessage {
  return { typeUrl, value: encodeMessage(typeName, value) };
}

/** Unpacks an Any whose type is in the proto tree into a plain object. */
export function decodeAny<T = Record<string, unknown>>(any: { typeUrl: string; value: Uint8Array }): T {
  if (any === null || typeof any !== 'object' || typeof any.typeUrl !== 'string' || any.typeUrl === '') {
    throw new InvalidArgumentError('decode any: missing type url');
  }
  return decodeMessage<T>(typeNameOfUrl(any.typeUrl), any.value ?? Buffer.alloc(0));
}
