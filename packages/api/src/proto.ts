/**
 * The one place berth loads its containerd-compatible .proto files (packages/api/proto).
 * gRPC servers and clients take service definitions from here; ttrpc and Any payloads
 * take protobufjs types from here, so every package sees the same JS shapes:
 * camelCase fields, int64 as number, bytes as Buffer, enums as their names,
 * Timestamp as {seconds, nanos}, Any as {typeUrl, value}.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
// grpc-js and proto-loader cost ~100 ms to load; processes that only use protobufjs types
// (the shim, ttrpc peers) never need them, so they are required on first gRPC use.
import type * as grpc from '@grpc/grpc-js';
import type * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';
import { InvalidArgumentError, NotFoundError } from './errors';

/** Directory holding the .proto tree; the same relative place from src/ and dist/. */
export const PROTO_ROOT = path.join(__dirname, '..', 'proto');

/** Options for @grpc/proto-loader; message conversion options are part of the contract. */
export const LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
} satisfies protoLoader.Options;

/** The same conversion applied when decoding with a protobufjs Type (ttrpc, Any). */
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
const serviceDefinitions = new Map<string, grpc.ServiceDefinition>();
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

/**
 * The JSON of just a service and every type its methods reach, at their full names.
 * proto-loader builds a definition (and a descriptor) for every object it is given, which
 * for the whole tree costs more than loading the tree; one service needs a small part.
 */
function serviceTreeJSON(service: protobuf.Service): protobuf.INamespace {
  const needed = new Set<protobuf.ReflectionObject>();
  const reach = (obj: protobuf.ReflectionObject): void => {
    if (needed.has(obj)) return;
    needed.add(obj);
    // A type nested in a message is defined with that message, so the message comes too.
    if (obj.parent instanceof protobuf.Type) reach(obj.parent);
    if (!(obj instanceof protobuf.Type)) return;
    for (const field of obj.fieldsArray) {
      field.resolve();
      if (field.resolvedType) reach(field.resolvedType);
    }
    // Nested types come along in the parent's JSON, so what they reach is needed too.
    for (const nested of obj.nestedArray) reach(nested);
  };
  needed.add(service);
  for (const method of service.methodsArray) {
    method.resolve();
    if (method.resolvedRequestType) reach(method.resolvedRequestType);
    if (method.resolvedResponseType) reach(method.resolvedResponseType);
  }
  const json: protobuf.INamespace = {};
  for (const obj of needed) {
    // An object inside a needed type is already part of that type's JSON.
    let ancestor = obj.parent;
    while (ancestor && !needed.has(ancestor)) ancestor = ancestor.parent;
    if (ancestor) continue;
    let scope = json;
    const parts = obj.fullName.slice(1).split('.');
    for (const part of parts.slice(0, -1)) {
      scope.nested ??= {};
      scope.nested[part] ??= {};
      scope = scope.nested[part] as protobuf.INamespace;
    }
    scope.nested ??= {};
    scope.nested[parts[parts.length - 1]] = obj.toJSON() as protobuf.AnyNestedObject;
  }
  return json;
}

const stripDot = (name: string): string => (name.startsWith('.') ? name.slice(1) : name);

/** The grpc-js service definition for a full service name, e.g. 'containerd.services.content.v1.Content'. */
export function grpcService(fullServiceName: string): grpc.ServiceDefinition {
  const name = stripDot(fullServiceName);
  let def = serviceDefinitions.get(name);
  if (def === undefined) {
    const service = lookupExact(name);
    if (!(service instanceof protobuf.Service)) {
      throw new NotFoundError(`grpc service ${JSON.stringify(fullServiceName)}: not found`);
    }
    const loader = require('@grpc/proto-loader') as typeof protoLoader;
    def = loader.fromJSON(serviceTreeJSON(service), LOADER_OPTIONS)[
      name
    ] as unknown as grpc.ServiceDefinition;
    serviceDefinitions.set(name, def);
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
 * instead of silently encoding as its default.
 */
function checkKnownFields(type: protobuf.Type, value: unknown, where: string): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) {
    throw new InvalidArgumentError(`${where}: expected an object for ${type.fullName.slice(1)}`);
  }
  // A Date has no own keys and would silently encode as the zero timestamp.
  if (value instanceof Date) {
    throw new InvalidArgumentError(
      `${where}: expected {seconds, nanos} for ${type.fullName.slice(1)}, got a Date`,
    );
  }
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const field = type.fields[key];
    if (field === undefined) {
      if (type.oneofs?.[key] !== undefined) continue; // the virtual "which member is set" key
      throw new InvalidArgumentError(
        `${where}: unknown field ${JSON.stringify(key)} in ${type.fullName.slice(1)}`,
      );
    }
    if (child === null || child === undefined) continue;
    field.resolve();
    const fieldType = field.resolvedType;
    if (fieldType instanceof protobuf.Enum) {
      const values =
        field.repeated && Array.isArray(child) ? child : field.map ? Object.values(child) : [child];
      for (const v of values) {
        if (typeof v === 'string' && !(v in fieldType.values)) {
          throw new InvalidArgumentError(
            `${where}.${key}: unknown ${fieldType.fullName.slice(1)} value ${JSON.stringify(v)}`,
          );
        }
      }
      continue;
    }
    if (!(fieldType instanceof protobuf.Type) || fieldType.fullName === '.google.protobuf.Any') continue;
    const at = `${where}.${key}`;
    if (field.map) {
      for (const [k, v] of Object.entries(child as Record<string, unknown>))
        checkKnownFields(fieldType, v, `${at}[${k}]`);
    } else if (field.repeated && Array.isArray(child)) {
      child.forEach((v, i) => {
        checkKnownFields(fieldType, v, `${at}[${i}]`);
      });
    } else {
      checkKnownFields(fieldType, child, at);
    }
  }
}

/** Encodes a plain object (the loader's JS shape) as the named message. */
export function encodeMessage(typeName: string, value: object): Buffer {
  const type = protoType(typeName);
  checkKnownFields(type, value, 'message');
  let message: protobuf.Message;
  try {
    message = type.fromObject(value as Record<string, unknown>);
  } catch (err) {
    throw new InvalidArgumentError(`encode ${stripDot(typeName)}: ${(err as Error).message}`, { cause: err });
  }
  return Buffer.from(type.encode(message).finish());
}

/** Decodes bytes of the named message into a plain object (the loader's JS shape). */
export function decodeMessage<T = Record<string, unknown>>(typeName: string, bytes: Uint8Array): T {
  const type = protoType(typeName);
  let message: protobuf.Message;
  try {
    message = type.decode(bytes);
  } catch (err) {
    throw new InvalidArgumentError(`decode ${stripDot(typeName)}: ${(err as Error).message}`, { cause: err });
  }
  return type.toObject(message, CONVERSION_OPTIONS) as T;
}

/** The JS shape of google.protobuf.Any under LOADER_OPTIONS. */
export interface AnyMessage {
  typeUrl: string;
  value: Buffer;
}

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
