/**
 * Wire compatibility with containerd: every service, method, message, field and enum
 * in the reference .proto files that Debian's golang-github-containerd-containerd-dev
 * installs must exist in ours with the same full name, numbers, types and streaming
 * flags. Ours may add things the reference lacks, never differ where both define.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { listProtoFiles, loadProtoRoot, PROTO_ROOT } from '@berth/api';
import * as protobuf from 'protobufjs';

const GOCODE = '/usr/share/gocode/src';
const REF_REPO = path.join(GOCODE, 'github.com/containerd/containerd');
const REF_FILES_DIRS = ['api/services', 'api/types', 'api/events'].map((d) => path.join(REF_REPO, d));
const REF_SHIM = path.join(REF_REPO, 'runtime/v2/task/shim.proto');
/** The v1 Linux runtime's options, which containerd's client sends to runtimes not named io.containerd.runc.*. */
const REF_RUNCTYPES = path.join(REF_REPO, 'runtime/linux/runctypes/runc.proto');

function walkProtos(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...walkProtos(full));
    else if (entry.name.endsWith('.proto')) out.push(full);
  }
  return out;
}

/** Where the reference's imports live on a Debian system. */
function resolveReferenceImport(target: string): string {
  if (path.isAbsolute(target)) return target;
  if (target.startsWith('github.com/')) return path.join(GOCODE, target);
  if (target.startsWith('gogoproto/')) return path.join(GOCODE, 'github.com/gogo/protobuf', target);
  if (target.startsWith('google/rpc/')) return path.join(GOCODE, 'github.com/gogo/googleapis', target);
  if (target.startsWith('google/protobuf/'))
    return path.join(GOCODE, 'github.com/gogo/protobuf/protobuf', target);
  return path.join(GOCODE, target);
}

function referenceFiles(): string[] {
  const missing = [...REF_FILES_DIRS, REF_SHIM, REF_RUNCTYPES].filter((p) => !fs.existsSync(p));
  if (missing.length > 0) {
    throw new Error(
      `containerd reference protos not found (${missing.join(', ')}); ` +
        'install the Debian package golang-github-containerd-containerd-dev (apt-get install ' +
        'golang-github-containerd-containerd-dev), which the compatibility test reads',
    );
  }
  return [...REF_FILES_DIRS.flatMap(walkProtos), REF_SHIM, REF_RUNCTYPES].sort();
}

/**
 * k8s.io/cri-api v0.26's runtime.v1 definition, which cri-tools 1.26 and the kubelet of that
 * era speak; the shared kit beside the repository holds it (../shared/reference).
 */
const REF_CRI = path.resolve(__dirname, '../../../../shared/reference/cri-api/api.proto');

function loadReference(files = referenceFiles()): { root: protobuf.Root; files: Set<string> } {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => resolveReferenceImport(target);
  root.loadSync(files, { keepCase: true });
  root.resolveAll();
  return { root, files: new Set(files) };
}

const shortName = (o: protobuf.ReflectionObject): string => o.fullName.replace(/^\./, '');

/** Every service, message and enum declared in one of `files`, nested types included. */
function declarations(root: protobuf.Root, files: Set<string>): protobuf.ReflectionObject[] {
  const out: protobuf.ReflectionObject[] = [];
  const visit = (ns: protobuf.NamespaceBase): void => {
    for (const child of ns.nestedArray) {
      const declaredHere = child.filename !== null && files.has(child.filename);
      if (
        declaredHere &&
        (child instanceof protobuf.Service ||
          child instanceof protobuf.Type ||
          child instanceof protobuf.Enum)
      ) {
        out.push(child);
      }
      if (child instanceof protobuf.Namespace || child instanceof protobuf.Type) visit(child);
    }
  };
  visit(root);
  return out;
}

/** Exact lookup: protobufjs's root.lookup also accepts partial and relative matches. */
function lookup(root: protobuf.Root, fullName: string): protobuf.ReflectionObject | null {
  let current: protobuf.ReflectionObject = root;
  for (const part of fullName.split('.')) {
    const nested: Record<string, protobuf.ReflectionObject> | undefined = (current as protobuf.Namespace)
      .nested;
    if (nested === undefined || !Object.hasOwn(nested, part)) return null;
    current = nested[part];
  }
  return current;
}

/** A field's type as comparable text: scalar name or the full name of a message/enum. */
function fieldType(field: protobuf.Field): string {
  field.resolve();
  const resolved = field.resolvedType;
  return resolved ? shortName(resolved) : field.type;
}

function fieldShape(field: protobuf.Field): string {
  const rule = field.map
    ? `map<${(field as unknown as protobuf.MapField).keyType}, ${fieldType(field)}>`
    : `${field.repeated ? 'repeated ' : ''}${fieldType(field)}`;
  const optional = field.options?.proto3_optional ? 'optional ' : '';
  return `${optional}${rule} = ${field.id}`;
}

/** Oneofs that exist in the schema (not the synthetic ones proto3 `optional` creates). */
function realOneofs(type: protobuf.Type): protobuf.OneOf[] {
  return type.oneofsArray.filter(
    (o) => !(o.fieldsArray.length === 1 && o.fieldsArray[0].options?.proto3_optional),
  );
}

function compareService(ref: protobuf.Service, ours: protobuf.Service, problems: string[]): void {
  const name = shortName(ref);
  for (const method of ref.methodsArray) {
    const theirs = ours.methods[method.name];
    const where = `rpc ${name}.${method.name}`;
    if (!theirs) {
      problems.push(`${where}: missing`);
      continue;
    }
    method.resolve();
    theirs.resolve();
    const pairs: [string, string, string][] = [
      [
        'request type',
        shortName(method.resolvedRequestType as protobuf.Type),
        shortName(theirs.resolvedRequestType as protobuf.Type),
      ],
      [
        'response type',
        shortName(method.resolvedResponseType as protobuf.Type),
        shortName(theirs.resolvedResponseType as protobuf.Type),
      ],
      ['client streaming', String(!!method.requestStream), String(!!theirs.requestStream)],
      ['server streaming', String(!!method.responseStream), String(!!theirs.responseStream)],
    ];
    for (const [what, a, b] of pairs)
      if (a !== b) problems.push(`${where}: ${what} is ${b}, reference has ${a}`);
  }
}

function compareType(ref: protobuf.Type, ours: protobuf.Type, problems: string[]): void {
  const name = shortName(ref);
  for (const field of ref.fieldsArray) {
    const theirs = ours.fields[field.name];
    if (!theirs) {
      const sameNumber = ours.fieldsArray.find((f) => f.id === field.id);
      problems.push(
        `field ${name}.${field.name}: missing (reference: ${fieldShape(field)})` +
          (sameNumber ? `; number ${field.id} is used by ${sameNumber.name}` : ''),
      );
      continue;
    }
    const want = fieldShape(field);
    const got = fieldShape(theirs);
    if (want !== got) problems.push(`field ${name}.${field.name}: ours is "${got}", reference is "${want}"`);
    const oneofRef = field.partOf && realOneofs(ref).includes(field.partOf) ? field.partOf.name : '';
    const oneofOurs = theirs.partOf && realOneofs(ours).includes(theirs.partOf) ? theirs.partOf.name : '';
    if (oneofRef !== oneofOurs) {
      problems.push(`field ${name}.${field.name}: oneof is "${oneofOurs}", reference has "${oneofRef}"`);
    }
  }
  // An extra field of ours must not reuse a number the reference gives another field.
  for (const field of ours.fieldsArray) {
    if (ref.fields[field.name]) continue;
    const clash = ref.fieldsArray.find((f) => f.id === field.id);
    if (clash)
      problems.push(
        `field ${name}.${field.name}: number ${field.id} belongs to ${clash.name} in the reference`,
      );
  }
}

function compareEnum(ref: protobuf.Enum, ours: protobuf.Enum, problems: string[]): void {
  const name = shortName(ref);
  for (const [value, number] of Object.entries(ref.values)) {
    if (!(value in ours.values)) problems.push(`enum ${name}.${value}: missing (reference: ${number})`);
    else if (ours.values[value] !== number) {
      problems.push(`enum ${name}.${value}: ours is ${ours.values[value]}, reference is ${number}`);
    }
  }
  for (const [value, number] of Object.entries(ours.values)) {
    if (value in ref.values) continue;
    const clash = Object.entries(ref.values).find(([, n]) => n === number);
    if (clash)
      problems.push(`enum ${name}.${value}: number ${number} belongs to ${clash[0]} in the reference`);
  }
}

/** Every way `ours` differs from the reference where the reference defines something. */
function compareProtoRoots(
  reference: { root: protobuf.Root; files: Set<string> },
  ours: protobuf.Root,
): string[] {
  const problems: string[] = [];
  for (const decl of declarations(reference.root, reference.files)) {
    const name = shortName(decl);
    const theirs = lookup(ours, name);
    const kind =
      decl instanceof protobuf.Service ? 'service' : decl instanceof protobuf.Type ? 'message' : 'enum';
    if (decl instanceof protobuf.Service) {
      if (theirs instanceof protobuf.Service) compareService(decl, theirs, problems);
      else problems.push(`${kind} ${name}: missing`);
    } else if (decl instanceof protobuf.Type) {
      // Map entry types are implicit in protobufjs; nested messages arrive here on their own.
      if (theirs instanceof protobuf.Type) compareType(decl, theirs, problems);
      else problems.push(`${kind} ${name}: missing`);
    } else if (decl instanceof protobuf.Enum) {
      if (theirs instanceof protobuf.Enum) compareEnum(decl, theirs, problems);
      else problems.push(`${kind} ${name}: missing`);
    }
  }
  return problems;
}

const report = (problems: string[]): string =>
  problems.length === 0 ? 'no differences' : `${problems.length} difference(s):\n  ${problems.join('\n  ')}`;

describe('containerd wire compatibility', () => {
  let reference: { root: protobuf.Root; files: Set<string> };
  beforeAll(() => {
    reference = loadReference();
  });

  it('reads a reference set that covers the services we serve', () => {
    const services = declarations(reference.root, reference.files)
      .filter((d) => d instanceof protobuf.Service)
      .map(shortName);
    expect(services).toEqual(
      expect.arrayContaining([
        'containerd.services.content.v1.Content',
        'containerd.services.snapshots.v1.Snapshots',
        'containerd.services.tasks.v1.Tasks',
        'containerd.task.v2.Task',
      ]),
    );
    expect(services.length).toBeGreaterThanOrEqual(13);
    // The v1 Linux runtime's options, which containerd's client sends to non-runc runtimes.
    const messages = declarations(reference.root, reference.files).map(shortName);
    expect(messages).toEqual(
      expect.arrayContaining(['containerd.linux.runc.RuncOptions', 'containerd.linux.runc.CreateOptions']),
    );
  });

  it('our protos match every service, method, message, field and enum of the reference', () => {
    const problems = compareProtoRoots(reference, loadProtoRoot(PROTO_ROOT, { keepCase: true }));
    expect(report(problems)).toBe('no differences');
  });

  describe('catches deliberate differences', () => {
    let tmp: string;
    beforeEach(() => {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-proto-compat-'));
      for (const rel of listProtoFiles()) {
        fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
        fs.copyFileSync(path.join(PROTO_ROOT, rel), path.join(tmp, rel));
      }
    });
    afterEach(() => {
      fs.rmSync(tmp, { recursive: true, force: true });
    });

    const alter = (rel: string, from: string, to: string): void => {
      const file = path.join(tmp, rel);
      const text = fs.readFileSync(file, 'utf8');
      expect(text).toContain(from); // the alteration must really apply
      fs.writeFileSync(file, text.replace(from, to));
    };

    it('reports a changed number, type, streaming flag, enum value and a missing method', () => {
      const content = 'containerd/services/content/v1/content.proto';
      alter(content, '  int64 total = 3;\n  // Expected digest', '  int64 total = 13;\n  // Expected digest');
      alter(content, '  int64 offset = 2;\n  // How many', '  int32 offset = 2;\n  // How many');
      alter(content, 'returns (stream ReadContentResponse)', 'returns (ReadContentResponse)');
      alter(content, '  COMMIT = 2;', '  COMMIT = 3;');
      alter(content, '  rpc Abort(AbortRequest) returns (google.protobuf.Empty);\n', '');
      alter('containerd/types/task/task.proto', '  uint32 exit_status = 9;', '  uint32 exit_code = 9;');

      const problems = compareProtoRoots(reference, loadProtoRoot(tmp, { keepCase: true }));
      expect(problems).toEqual(
        expect.arrayContaining([
          'field containerd.services.content.v1.WriteContentRequest.total: ours is "int64 = 13", reference is "int64 = 3"',
          'field containerd.services.content.v1.ReadContentRequest.offset: ours is "int32 = 2", reference is "int64 = 2"',
          'rpc containerd.services.content.v1.Content.Read: server streaming is false, reference has true',
          'enum containerd.services.content.v1.WriteAction.COMMIT: ours is 3, reference is 2',
          'rpc containerd.services.content.v1.Content.Abort: missing',
          'field containerd.v1.types.Process.exit_status: missing (reference: uint32 = 9); number 9 is used by exit_code',
          'field containerd.v1.types.Process.exit_code: number 9 belongs to exit_status in the reference',
        ]),
      );
      expect(problems).toHaveLength(7);
    });

    it('reports a renumbered or missing field of the v1 runtime options', () => {
      const runctypes = 'containerd/runtime/linux/runctypes/runc.proto';
      alter(runctypes, '  string runtime_root = 2;', '  string runtime_root = 5;');
      alter(runctypes, '  string shim_cgroup = 9;\n', '');
      const problems = compareProtoRoots(reference, loadProtoRoot(tmp, { keepCase: true }));
      expect(problems).toEqual([
        'field containerd.linux.runc.RuncOptions.runtime_root: ours is "string = 5", reference is "string = 2"',
        'field containerd.linux.runc.CreateOptions.shim_cgroup: missing (reference: string = 9)',
      ]);
    });

    it('reports a message moved to another package and a map turned into a repeated field', () => {
      alter('containerd/types/mount.proto', 'package containerd.types;', 'package containerd.types.v2;');
      // Keep the tree loadable: point users of the old name at the new one.
      for (const rel of listProtoFiles(tmp)) {
        const file = path.join(tmp, rel);
        const text = fs.readFileSync(file, 'utf8');
        fs.writeFileSync(file, text.replaceAll('containerd.types.Mount ', 'containerd.types.v2.Mount '));
      }
      alter(
        'containerd/types/descriptor.proto',
        'map<string, string> annotations = 5;',
        'repeated string annotations = 5;',
      );

      const problems = compareProtoRoots(reference, loadProtoRoot(tmp, { keepCase: true }));
      expect(problems).toContain('message containerd.types.Mount: missing');
      expect(problems).toContain(
        'field containerd.types.Descriptor.annotations: ours is "repeated string = 5", reference is "map<string, string> = 5"',
      );
      expect(problems).toContain(
        'field containerd.services.snapshots.v1.PrepareSnapshotResponse.mounts: ours is "repeated containerd.types.v2.Mount = 1", reference is "repeated containerd.types.Mount = 1"',
      );
    });
  });
});

describe('Kubernetes CRI (runtime.v1) wire compatibility', () => {
  let reference: { root: protobuf.Root; files: Set<string> };
  beforeAll(() => {
    if (!fs.existsSync(REF_CRI)) {
      throw new Error(`CRI reference ${REF_CRI} not found: the shared kit must sit beside the repository`);
    }
    reference = loadReference([REF_CRI]);
  });

  it('reads both CRI services of the reference', () => {
    const services = declarations(reference.root, reference.files)
      .filter((d) => d instanceof protobuf.Service)
      .map(shortName);
    expect(services.sort()).toEqual(['runtime.v1.ImageService', 'runtime.v1.RuntimeService']);
    expect(declarations(reference.root, reference.files).length).toBeGreaterThan(150);
  });

  it('our runtime.v1 matches every service, method, message, field and enum of the reference', () => {
    const problems = compareProtoRoots(reference, loadProtoRoot(PROTO_ROOT, { keepCase: true }));
    expect(report(problems)).toBe('no differences');
  });

  it('catches a renumbered field, a changed enum value and a streaming flag', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cri-compat-'));
    try {
      for (const rel of listProtoFiles()) {
        fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
        fs.copyFileSync(path.join(PROTO_ROOT, rel), path.join(tmp, rel));
      }
      const file = path.join(tmp, 'k8s.io/cri-api/runtime/v1/api.proto');
      let text = fs.readFileSync(file, 'utf8');
      for (const [from, to] of [
        ['  Int64Value run_as_group = 12;', '  Int64Value run_as_group = 17;'],
        ['  SANDBOX_NOTREADY = 1;', '  SANDBOX_NOTREADY = 2;'],
        ['returns (stream ContainerEventResponse)', 'returns (ContainerEventResponse)'],
      ]) {
        expect(text).toContain(from);
        text = text.replace(from, to);
      }
      fs.writeFileSync(file, text);
      const problems = compareProtoRoots(reference, loadProtoRoot(tmp, { keepCase: true }));
      expect(problems.sort()).toEqual([
        'enum runtime.v1.PodSandboxState.SANDBOX_NOTREADY: ours is 2, reference is 1',
        'field runtime.v1.LinuxContainerSecurityContext.run_as_group: ours is "runtime.v1.Int64Value = 17", reference is "runtime.v1.Int64Value = 12"',
        'rpc runtime.v1.RuntimeService.GetContainerEvents: server streaming is false, reference has true',
      ]);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
