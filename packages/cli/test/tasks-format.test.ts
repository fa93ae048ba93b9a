/**
 * The pieces of run and tasks that need no daemon: where a command line starts, signal
 * names, and the cgroup metrics ctr prints (decoded from protobuf wire bytes made here).
 */
import { GLOBAL_FLAGS, parseArgs, ROOT } from '@berth/cli';
import { decodeMetrics, metricsJson, metricsRows } from '../src/cgroup-metrics';
import { parseSignal } from '../src/task-io';

describe('run and exec command lines', () => {
  const parse = (argv: string[]) => {
    const r = parseArgs(ROOT, GLOBAL_FLAGS, argv, {});
    if (r.kind !== 'run') throw new Error(`parsed as ${r.kind}`);
    return r;
  };

  it('keeps flags after the image and id for the command', () => {
    const r = parse(['run', '--rm', '-t', 'img', 'id', 'sh', '-c', 'echo -n hi', '--help', '-t']);
    expect(r.args).toEqual(['img', 'id', 'sh', '-c', 'echo -n hi', '--help', '-t']);
    expect(r.flags).toMatchObject({ rm: true, tty: true });
  });

  it('still reads flags between the image and the id, and global flags before them', () => {
    const r = parse(['-n', 'ns1', 'run', 'img', '--env', 'A=1', 'id', 'env']);
    expect(r.args).toEqual(['img', 'id', 'env']);
    expect(r.flags.env).toEqual(['A=1']);
    expect(r.globals.namespace).toBe('ns1');
  });

  it('ends exec flags at the container id', () => {
    const r = parse(['tasks', 'exec', '--exec-id', 'e1', 'c1', 'ls', '-la', '--exec-id', 'x']);
    expect(r.args).toEqual(['c1', 'ls', '-la', '--exec-id', 'x']);
    expect(r.flags['exec-id']).toBe('e1');
  });

  it('needs an image and an id', () => {
    expect(() => parse(['run', 'img'])).toThrow(/expects at least 2 arguments, got 1/);
  });
});

describe('parseSignal', () => {
  it('reads numbers and names with or without SIG, in any case', () => {
    expect(parseSignal('9')).toBe(9);
    expect(parseSignal('SIGKILL')).toBe(9);
    expect(parseSignal('term')).toBe(15);
    expect(parseSignal('SigHup')).toBe(1);
  });

  it('refuses what is no signal', () => {
    for (const bad of ['0', 'SIGNOPE', '', '99', '-1'])
      expect(() => parseSignal(bad)).toThrow(/Invalid signal/);
  });
});

// A tiny protobuf writer: varint fields and nested messages, as the shims' cgroups stats are sent.
const varint = (n: bigint): number[] => {
  const out: number[] = [];
  let v = n;
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
};
const u64 = (field: number, n: bigint) => [...varint(BigInt(field << 3)), ...varint(n)];
const msg = (field: number, body: number[]) => [
  ...varint(BigInt((field << 3) | 2)),
  ...varint(BigInt(body.length)),
  ...body,
];
const packed = (field: number, ns: bigint[]) =>
  msg(
    field,
    ns.flatMap((n) => varint(n)),
  );

describe('cgroup metrics', () => {
  const NO_LIMIT = 9223372036854771712n; // beyond 2^53: must stay exact
  const v1 = Buffer.from([
    ...msg(2, [...u64(1, 2n)]), // pids: current 2, limit 0 (absent)
    ...msg(3, [
      ...msg(1, [...u64(1, 13581943n), ...u64(2, 10000000n), ...packed(4, [69162n, 13512781n])]),
      ...msg(2, []),
    ]),
    ...msg(4, [
      ...u64(1, 790528n),
      ...u64(18, 790528n),
      ...msg(33, [...u64(1, NO_LIMIT), ...u64(2, 1597440n)]),
    ]),
    ...u64(99, 5n), // an unknown field is skipped
  ]);

  it('decodes v1 stats and prints the table ctr prints', () => {
    const d = decodeMetrics('io.containerd.cgroups.v1.Metrics', v1)!;
    expect(d.version).toBe(1);
    expect(metricsRows(1, d.data)).toBe(
      'METRIC\tVALUE\t\n' +
        'memory.usage_in_bytes\t1597440\t\n' +
        `memory.limit_in_bytes\t${NO_LIMIT}\t\n` +
        'memory.stat.cache\t790528\t\n' +
        'cpuacct.usage\t13581943\t\n' +
        'cpuacct.usage_percpu\t[69162 13512781]\t\n' +
        'pids.current\t2\t\n' +
        'pids.limit\t0\t\n',
    );
  });

  it("writes Go's JSON: field order, zero values left out, empty messages kept, 64-bit exact", () => {
    const d = decodeMetrics('/io.containerd.cgroups.v1.Metrics', v1)!;
    expect(metricsJson(1, d.data)).toBe(
      [
        '{',
        '  "pids": {',
        '    "current": 2',
        '  },',
        '  "cpu": {',
        '    "usage": {',
        '      "total": 13581943,',
        '      "kernel": 10000000,',
        '      "per_cpu": [',
        '        69162,',
        '        13512781',
        '      ]',
        '    },',
        '    "throttling": {}',
        '  },',
        '  "memory": {',
        '    "cache": 790528,',
        '    "total_cache": 790528,',
        '    "usage": {',
        `      "limit": ${NO_LIMIT},`,
        '      "usage": 1597440',
        '    }',
        '  }',
        '}',
      ].join('\n'),
    );
  });

  it('prints the v2 rows', () => {
    const v2 = Buffer.from([
      ...msg(1, [...u64(1, 3n), ...u64(2, 100n)]),
      ...msg(2, [...u64(1, 500n)]),
      ...msg(4, [...u64(32, 4096n)]),
    ]);
    const d = decodeMetrics('io.containerd.cgroups.v2.Metrics', v2)!;
    expect(d.version).toBe(2);
    expect(metricsRows(2, d.data)).toMatch(
      /^METRIC\tVALUE\t\npids\.current\t3\t\npids\.limit\t100\t\ncpu\.usage_usec\t500\t\n/,
    );
    expect(metricsRows(2, d.data)).toMatch(/memory\.usage\t4096\t\nmemory\.usage_limit\t0\t\n/);
  });

  it('knows only the cgroups types, and refuses broken bytes', () => {
    expect(decodeMetrics('containerd.windows.Stats', Buffer.alloc(0))).toBeUndefined();
    expect(() => decodeMetrics('io.containerd.cgroups.v1.Metrics', Buffer.from([0x12, 0x05, 0x08]))).toThrow(
      /truncated/,
    );
  });
});
