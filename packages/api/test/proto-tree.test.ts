import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  buildProtoTree,
  CONVERSION_OPTIONS,
  grpcService,
  isProtoTreeType,
  listProtoFiles,
  loadProtoRoot,
  PROTO_ROOT,
  PROTO_TREE_FILE,
  protoRootFromJSON,
  protoTreeHash,
  protoType,
  readProtoTree,
  SERVICES,
} from '@berth/api';
import * as protoLoader from '@grpc/proto-loader';
import * as protobuf from 'protobufjs';

/** How proto-loader was configured before the codecs were generated: the shapes to keep. */
const LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
} satisfies protoLoader.Options;

/** proto-loader decodes an unset message field as null, the generated codecs as undefined. */
function nullsToUndefined(v: unknown): unknown {
  if (v === null) return undefined;
  if (Array.isArray(v)) return v.map(nullsToUndefined);
  if (typeof v === 'object' && !Buffer.isBuffer(v)) {
    return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, nullsToUndefined(x)]));
  }
  return v;
}

describe('built proto tree file', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-proto-tree-'));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** A copy of the real proto tree that a test may modify. */
  const copyProtos = (): string => {
    const dir = path.join(tmp, 'proto');
    for (const file of listProtoFiles()) {
      fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      fs.copyFileSync(path.join(PROTO_ROOT, file), path.join(dir, file));
    }
    return dir;
  };

  it('is not used when running from src', () => {
    expect(path.basename(path.dirname(PROTO_TREE_FILE))).toBe('src');
    expect(fs.existsSync(PROTO_TREE_FILE)).toBe(false);
  });

  it('loads to the same tree, fix-ups included, as parsing the .proto files', () => {
    const file = path.join(tmp, 'proto-tree.json');
    fs.writeFileSync(file, JSON.stringify(buildProtoTree()));
    const tree = readProtoTree(file);
    expect(tree).toBeDefined();
    const fromJson = protoRootFromJSON(tree!.root);
    expect(fromJson.toJSON()).toEqual(loadProtoRoot().toJSON());
    // Any keeps the camelCase field the loader renames it to.
    const any = fromJson.lookupType('google.protobuf.Any');
    expect(Object.keys(any.fields).sort()).toEqual(['typeUrl', 'value']);
    // The same bytes and the same JS shape as the parsed tree's types.
    const name = 'containerd.task.v2.CreateTaskRequest';
    const value = {
      id: 'c1',
      bundle: '/b',
      rootfs: [{ type: 'overlay', source: 'o', target: '', options: ['lowerdir=/l'] }],
      terminal: true,
      options: { typeUrl: 'x.Y', value: Buffer.from([1, 2]) },
    };
    const parsed = protoType(name);
    const loaded = fromJson.lookupType(name);
    const bytes = Buffer.from(parsed.encode(parsed.fromObject(value)).finish());
    expect(Buffer.from(loaded.encode(loaded.fromObject(value)).finish())).toEqual(bytes);
    expect(loaded.toObject(loaded.decode(bytes), CONVERSION_OPTIONS)).toEqual(
      parsed.toObject(parsed.decode(bytes), CONVERSION_OPTIONS),
    );
  });

  it('gives proto-loader the same service definitions as the parsed tree', () => {
    const fromFile = protoLoader.fromJSON(buildProtoTree().root, LOADER_OPTIONS);
    const fromParse = protoLoader.fromJSON(loadProtoRoot().toJSON(), LOADER_OPTIONS);
    expect(Object.keys(fromFile).sort()).toEqual(Object.keys(fromParse).sort());
    const svc = 'containerd.services.content.v1.Content';
    const a = fromFile[svc] as protoLoader.ServiceDefinition;
    const b = fromParse[svc] as protoLoader.ServiceDefinition;
    expect(Object.keys(a)).toEqual(Object.keys(b));
    const req = {
      path: '/x',
      ref: 'r',
      offset: 5,
      total: 10,
      expected: '',
      data: Buffer.from('d'),
      labels: {},
    };
    expect(a.Write.requestSerialize(req)).toEqual(b.Write.requestSerialize(req));
  });

  it.each([...SERVICES])(
    'grpcService(%s), from the generated codecs, matches proto-loader on the .proto files',
    (name) => {
      const whole = protoLoader.fromJSON(loadProtoRoot().toJSON(), LOADER_OPTIONS)[
        name
      ] as protoLoader.ServiceDefinition;
      const def = grpcService(name) as unknown as protoLoader.ServiceDefinition;
      expect(Object.keys(def)).toEqual(Object.keys(whole));
      for (const [method, m] of Object.entries(whole)) {
        const got = def[method];
        // originalName differs only in case: ts-proto writes closeIO where proto-loader wrote closeIo.
        expect([got.path, got.originalName?.toLowerCase(), got.requestStream, got.responseStream]).toEqual([
          m.path,
          m.originalName?.toLowerCase(),
          m.requestStream,
          m.responseStream,
        ]);
        // The same JS shapes for a request and a response filled with defaults, and bytes each
        // side reads back. (protobufjs also wrote fields set to their default; the generated
        // encoders leave them out, as Go's do.)
        const req = m.requestDeserialize(Buffer.alloc(0));
        expect(got.requestDeserialize(Buffer.alloc(0))).toStrictEqual(nullsToUndefined(req));
        expect(m.requestDeserialize(got.requestSerialize(req))).toEqual(req);
        expect(got.requestDeserialize(m.requestSerialize(req))).toEqual(nullsToUndefined(req));
        const res = m.responseDeserialize(Buffer.alloc(0));
        expect(got.responseDeserialize(Buffer.alloc(0))).toStrictEqual(nullsToUndefined(res));
        expect(m.responseDeserialize(got.responseSerialize(res))).toEqual(res);
        expect(got.responseDeserialize(m.responseSerialize(res))).toEqual(nullsToUndefined(res));
      }
    },
  );

  it('is refused when the .proto files changed since it was built', () => {
    const dir = copyProtos();
    const file = path.join(tmp, 'proto-tree.json');
    fs.writeFileSync(file, JSON.stringify(buildProtoTree(dir)));
    expect(readProtoTree(file, dir)).toBeDefined();
    const before = protoTreeHash(dir);
    const target = path.join(dir, 'containerd/services/version/v1/version.proto');
    fs.appendFileSync(target, '\n// edited\n');
    expect(protoTreeHash(dir)).not.toBe(before);
    expect(readProtoTree(file, dir)).toBeUndefined();
    fs.writeFileSync(path.join(dir, 'extra.proto'), 'syntax = "proto3";\npackage extra;\nmessage E {}\n');
    fs.writeFileSync(file, JSON.stringify(buildProtoTree(dir)));
    expect(readProtoTree(file, dir)).toBeDefined();
    fs.rmSync(path.join(dir, 'extra.proto'));
    expect(readProtoTree(file, dir)).toBeUndefined();
  });

  it('is refused when missing or not a tree file', () => {
    const file = path.join(tmp, 'proto-tree.json');
    expect(readProtoTree(file)).toBeUndefined();
    for (const text of ['{', 'null', '[]', '{"hash":1,"root":{}}', `{"hash":"${protoTreeHash()}"}`]) {
      fs.writeFileSync(file, text);
      expect(readProtoTree(file)).toBeUndefined();
    }
  });

  it('isProtoTreeType tells the tree types from look-alikes of another root', () => {
    const own = protoType('containerd.task.v2.CreateTaskRequest');
    expect(isProtoTreeType(own)).toBe(true);
    const other = protoRootFromJSON(buildProtoTree().root).lookupType('containerd.task.v2.CreateTaskRequest');
    expect(isProtoTreeType(other)).toBe(false);
    expect(isProtoTreeType(new protobuf.Type('Loose'))).toBe(false);
  });
});
