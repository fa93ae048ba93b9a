import { isInvalidArgument } from '@berth/api';
import { defaultCriPluginConfig, passedPodAnnotations, resolveCriConfig } from '@berth/cri';

describe('resolveCriConfig', () => {
  it('offers berth and runc handlers by default, berth as the default runtime', () => {
    const c = resolveCriConfig(defaultCriPluginConfig());
    expect(c.defaultRuntimeName).toBe('berth');
    expect(c.runtimes.get('berth')?.type).toBe('io.containerd.berth.v1');
    expect(c.runtimes.get('runc')?.type).toBe('io.containerd.runc.v2');
    expect(c.cni).toEqual({ binDirs: ['/opt/cni/bin'], confDir: '/etc/cni/net.d', maxConfNum: 1 });
  });

  it("reads containerd's runtimes table, options and all", () => {
    const raw = defaultCriPluginConfig();
    raw.containerd.default_runtime_name = 'fast';
    raw.containerd.runtimes = {
      fast: { runtime_type: 'io.containerd.runc.v2', options: { SystemdCgroup: false, Root: '/x/runc' } },
    };
    raw.stream_server_port = '10010';
    const c = resolveCriConfig(raw);
    expect(c.runtimes.get('fast')).toEqual({
      name: 'fast',
      type: 'io.containerd.runc.v2',
      path: '',
      podAnnotations: [],
      options: { SystemdCgroup: false, Root: '/x/runc' },
    });
    expect(c.streamServerPort).toBe(10010);
  });

  it('warns about keys it takes but does not act on, naming them', () => {
    const raw = defaultCriPluginConfig();
    raw.enable_tls_streaming = true;
    raw.containerd.runtimes = {
      runc: {
        runtime_type: 'io.containerd.runc.v2',
        privileged_without_host_devices: true,
        options: { Rooot: '/x' },
      },
    };
    const warnings: string[] = [];
    resolveCriConfig(raw, (m) => warnings.push(m));
    expect(warnings).toEqual([
      'config key plugins."io.containerd.grpc.v1.cri".enable_tls_streaming = true is not used by berth, ignored',
      'config key plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.privileged_without_host_devices is not used by berth, ignored',
      expect.stringMatching(
        /^config key plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options.Rooot is not a runc option \(NoPivotRoot, .*Root.*\), ignored$/,
      ),
    ]);
  });

  it.each([
    [
      'a default runtime nobody configured',
      (r: any) => (r.containerd.default_runtime_name = 'kata'),
      'default_runtime_name = "kata"',
    ],
    [
      'a runtime without a type',
      (r: any) => (r.containerd.runtimes = { x: { runtime_path: '/bin/x' } }),
      'runtimes.x.runtime_type',
    ],
    [
      'a port that is not a number',
      (r: any) => (r.stream_server_port = 'http'),
      'stream_server_port = "http"',
    ],
    ['an empty sandbox image', (r: any) => (r.sandbox_image = ''), 'sandbox_image = ""'],
  ])('refuses %s with InvalidArgument naming the key and value', (_what, change, named) => {
    const raw = defaultCriPluginConfig();
    change(raw);
    let err: unknown;
    try {
      resolveCriConfig(raw);
    } catch (e) {
      err = e;
    }
    expect(isInvalidArgument(err)).toBe(true);
    expect((err as Error).message).toContain(named);
  });
});

describe('passedPodAnnotations', () => {
  const handler = (podAnnotations: string[]) => ({
    name: 'x',
    type: 'io.containerd.berth.v1',
    path: '',
    podAnnotations,
    options: {},
  });
  const pod = {
    'io.containerd.berth.v1.group': 'solo',
    'example.com/a': '1',
    'example.com/b': '2',
    other: '3',
  };

  it('passes the annotations whose keys match a pattern, whole key, as filepath.Match', () => {
    expect(passedPodAnnotations(handler(['io.containerd.berth.v1.group']), pod)).toEqual({
      'io.containerd.berth.v1.group': 'solo',
    });
    expect(passedPodAnnotations(handler(['example.com/*']), pod)).toEqual({
      'example.com/a': '1',
      'example.com/b': '2',
    });
    expect(passedPodAnnotations(handler(['example.com/?']), pod)).toEqual({
      'example.com/a': '1',
      'example.com/b': '2',
    });
    expect(passedPodAnnotations(handler(['example*']), pod)).toEqual({});
    expect(passedPodAnnotations(handler(['io.containerd.berth.v1.grou']), pod)).toEqual({});
  });

  it('passes nothing when the runtime lists no pattern', () => {
    expect(passedPodAnnotations(handler([]), pod)).toEqual({});
    expect(passedPodAnnotations(undefined, pod)).toEqual({});
  });
});
