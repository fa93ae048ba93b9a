import {
  decodeAny,
  decodeMessage,
  encodeAny,
  encodeMessage,
  grpcClientConstructor,
  grpcService,
  listProtoFiles,
  loadProtoRoot,
  PROTO_ROOT,
  protoService,
  protoType,
  SERVICES,
} from '@berth/api';
import * as grpc from '@grpc/grpc-js';
import * as protobuf from 'protobufjs';

describe('proto tree', () => {
  it('PROTO_ROOT points at the package proto directory', () => {
    expect(listProtoFiles()).toContain('containerd/services/content/v1/content.proto');
    expect(PROTO_ROOT.endsWith('proto')).toBe(true);
  });

  it('SERVICES lists exactly the services defined in the tree', () => {
    const found: string[] = [];
    const visit = (ns: protobuf.NamespaceBase): void => {
      for (const child of ns.nestedArray) {
        if (child instanceof protobuf.Service) found.push(child.fullName.slice(1));
        if (child instanceof protobuf.Namespace || child instanceof protobuf.Type) visit(child);
      }
    };
    visit(loadProtoRoot());
    expect([...found].sort()).toEqual([...SERVICES].sort());
  });

  it.each([...SERVICES])('loads %s as a grpc service with a client', (name) => {
    const def = grpcService(name);
    const methods = Object.keys(def);
    expect(methods.length).toBeGreaterThan(0);
    for (const m of methods) expect(def[m].path).toBe(`/${name}/${m}`);
    const Client = grpcClientConstructor(name);
    expect(Client.serviceName).toBe(name);
    expect(grpcClientConstructor(name)).toBe(Client); // cached
    const client = new Client('unix:///nonexistent.sock', grpc.credentials.createInsecure());
    expect(typeof (client as unknown as Record<string, unknown>)[methods[0]]).toBe('function');
    client.close();
    expect(protoService(name).fullName).toBe(`.${name}`);
  });

  it('keeps streaming flags of content.Write and content.Read', () => {
    const def = grpcService('containerd.services.content.v1.Content');
    expect(def.Write.requestStream).toBe(true);
    expect(def.Write.responseStream).toBe(true);
    expect(def.Read.requestStream).toBe(false);
    expect(def.Read.responseStream).toBe(true);
    expect(def.Info.requestStream || def.Info.responseStream).toBe(false);
  });

  it('throws NotFound for unknown services and message types', () => {
    expect(() => grpcService('containerd.services.nope.v1.Nope')).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND', message: expect.stringContaining('nope') }),
    );
    // A message name is not a service.
    expect(() => grpcService('containerd.services.content.v1.InfoRequest')).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND' }),
    );
    expect(() => grpcClientConstructor('x.Y')).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
    expect(() => protoType('containerd.types.Nope')).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND' }),
    );
    // A service name is not a message.
    expect(() => protoType('containerd.services.content.v1.Content')).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND' }),
    );
    expect(() => protoType('')).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
    // Only exact full names resolve, never partial or relative ones.
    expect(() => protoType('Mount')).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
    expect(() => protoType('types.Mount')).toThrow(expect.objectContaining({ code: 'ERR_NOT_FOUND' }));
    expect(protoType('.containerd.types.Mount').fullName).toBe('.containerd.types.Mount');
    expect(() => protoType('containerd.types.Mount.type')).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND' }),
    );
    expect(() => protoService('containerd.types.Mount')).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND' }),
    );
  });
});

describe('message conversion', () => {
  const write = {
    action: 'COMMIT',
    ref: 'ingest-1',
    total: 2 ** 40 + 3, // beyond 32 bits
    expected: 'sha256:abc',
    offset: 7,
    data: Buffer.from([0, 1, 2, 255]),
    labels: { 'containerd.io/gc.root': 'x', b: '' },
  };

  it('round-trips int64, bytes, map and enum through the grpc serializers', () => {
    const method = grpcService('containerd.services.content.v1.Content').Write;
    const wire = method.requestSerialize(write);
    const back = method.requestDeserialize(wire) as Record<string, unknown>;
    expect(back).toEqual(write);
    expect(Buffer.isBuffer(back.data)).toBe(true);
    // A view of the received bytes, not a copy (Write carries 1 MiB a message).
    expect((back.data as Buffer).buffer).toBe(wire.buffer);
    expect(typeof back.total).toBe('number');
  });

  it('fills defaults, decodes Timestamp as {seconds, nanos} and an unset message as undefined', () => {
    const method = grpcService('containerd.services.content.v1.Content').Write;
    const wire = method.responseSerialize({ startedAt: { seconds: 1700000000, nanos: 5 }, offset: 3 });
    const back = method.responseDeserialize(wire) as Record<string, unknown>;
    expect('updatedAt' in back).toBe(true);
    expect(back).toStrictEqual({
      action: 'STAT',
      startedAt: { seconds: 1700000000, nanos: 5 },
      updatedAt: undefined,
      offset: 3,
      total: 0,
      digest: '',
    });
  });

  it('the grpc serializers and encodeMessage produce the same bytes', () => {
    const method = grpcService('containerd.services.content.v1.Content').Write;
    expect(encodeMessage('containerd.services.content.v1.WriteContentRequest', write)).toEqual(
      method.requestSerialize(write),
    );
    expect(
      decodeMessage('containerd.services.content.v1.WriteContentRequest', method.requestSerialize(write)),
    ).toEqual(write);
  });

  it('encodes a field with the number and wire type containerd uses', () => {
    // Descriptor.annotations is field 5 (4 is unused): key 5<<3|2 = 0x2a.
    const bytes = encodeMessage('containerd.types.Descriptor', { annotations: { a: 'b' } });
    expect(bytes[0]).toBe(0x2a);
    // Lease.labels is field 3 in CreateRequest.
    expect(encodeMessage('containerd.services.leases.v1.CreateRequest', { labels: { a: 'b' } })[0]).toBe(
      0x1a,
    );
  });

  it('rejects unknown fields and wrongly typed values with InvalidArgument', () => {
    expect(() =>
      encodeMessage('containerd.types.Descriptor', { mediaType: 'x', digets: 'sha256:1' }),
    ).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('"digets"') }),
    );
    expect(() =>
      encodeMessage('containerd.services.introspection.v1.PluginsResponse', {
        plugins: [{ type: 'a', idd: 'b' }],
      }),
    ).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_ARGUMENT',
        message: expect.stringContaining('plugins[0]'),
      }),
    );
    expect(() => encodeMessage('containerd.services.content.v1.InfoResponse', { info: 'nope' })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
    expect(() =>
      encodeMessage('containerd.services.content.v1.WriteContentRequest', { action: 'EXPLODE' }),
    ).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });

  it('rejects a Date where a Timestamp object is expected', () => {
    expect(() =>
      encodeMessage('containerd.services.leases.v1.Lease', { id: 'l', createdAt: new Date() }),
    ).toThrow(
      expect.objectContaining({
        code: 'ERR_INVALID_ARGUMENT',
        message: expect.stringContaining('message.createdAt'),
      }),
    );
  });

  it('rejects corrupt bytes with InvalidArgument', () => {
    // Unused field 4 with the reserved wire type 7.
    expect(() => decodeMessage('containerd.types.Descriptor', Buffer.from([0x27, 1]))).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
  });
});

describe('Any', () => {
  it('round-trips with the bare full name as the type url by default', () => {
    const platform = { os: 'linux', architecture: 'amd64', variant: '' };
    const any = encodeAny('containerd.types.Platform', platform);
    expect(any.typeUrl).toBe('containerd.types.Platform');
    expect(Buffer.isBuffer(any.value)).toBe(true);
    expect(decodeAny(any)).toEqual(platform);
  });

  it('accepts an explicit type url and decodes type.googleapis.com urls', () => {
    const any = encodeAny(
      'containerd.types.Mount',
      { type: 'bind', options: ['rbind'] },
      'type.googleapis.com/containerd.types.Mount',
    );
    expect(any.typeUrl).toBe('type.googleapis.com/containerd.types.Mount');
    expect(decodeAny(any)).toEqual({ type: 'bind', source: '', target: '', options: ['rbind'] });
  });

  it('survives being nested inside another message through the grpc serializers', () => {
    const err = encodeAny('containerd.types.Platform', { os: 'linux', architecture: 'arm64', variant: 'v8' });
    const method = grpcService('containerd.services.introspection.v1.Introspection').Plugins;
    const wire = method.responseSerialize({
      plugins: [{ type: 't', id: 'i', initErr: { code: 2, message: 'boom', details: [err] } }],
    });
    const back = method.responseDeserialize(wire) as {
      plugins: { initErr: { details: { typeUrl: string; value: Buffer }[] } }[];
    };
    const detail = back.plugins[0].initErr.details[0];
    expect(detail.typeUrl).toBe('containerd.types.Platform');
    expect(decodeAny(detail)).toEqual({ os: 'linux', architecture: 'arm64', variant: 'v8' });
  });

  it('reports unknown types as NotFound and missing urls as InvalidArgument', () => {
    expect(() => encodeAny('containerd.events.Nope', {})).toThrow(
      expect.objectContaining({ code: 'ERR_NOT_FOUND' }),
    );
    expect(() => decodeAny({ typeUrl: 'containerd.events.Nope', value: Buffer.alloc(0) })).toThrow(
      expect.objectContaining({
        code: 'ERR_NOT_FOUND',
        message: expect.stringContaining('containerd.events.Nope'),
      }),
    );
    expect(() => decodeAny({ typeUrl: '', value: Buffer.alloc(0) })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }),
    );
  });
});
