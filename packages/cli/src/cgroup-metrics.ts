/**
 * The cgroup statistics a task's Metrics carry (io.containerd.cgroups.v1.Metrics and
 * io.containerd.cgroups.v2.Metrics), decoded from protobuf wire format and printed as ctr
 * prints them: a table of the usual values, or the whole message as Go's encoding/json
 * writes it (field order, omitempty, 64-bit numbers exact).
 */

type Kind = 'u64' | 'string' | 'msg' | 'rep-msg' | 'rep-u64';
type Field = [number, string, Kind, Schema?];
type Schema = readonly Field[];

const u = (n: number, name: string): Field => [n, name, 'u64'];

const V1_MEMORY_ENTRY: Schema = [u(1, 'limit'), u(2, 'usage'), u(3, 'max'), u(4, 'failcnt')];
const V1_BLKIO_ENTRY: Schema = [
  [1, 'op', 'string'],
  [2, 'device', 'string'],
  u(3, 'major'),
  u(4, 'minor'),
  u(5, 'value'),
];
const RDMA_ENTRY: Schema = [[1, 'device', 'string'], u(2, 'hca_handles'), u(3, 'hca_objects')];
const RDMA: Schema = [
  [1, 'current', 'rep-msg', RDMA_ENTRY],
  [2, 'limit', 'rep-msg', RDMA_ENTRY],
];
const PIDS: Schema = [u(1, 'current'), u(2, 'limit')];

const V1_METRICS: Schema = [
  [1, 'hugetlb', 'rep-msg', [u(1, 'usage'), u(2, 'max'), u(3, 'failcnt'), [4, 'pagesize', 'string']]],
  [2, 'pids', 'msg', PIDS],
  [
    3,
    'cpu',
    'msg',
    [
      [1, 'usage', 'msg', [u(1, 'total'), u(2, 'kernel'), u(3, 'user'), [4, 'per_cpu', 'rep-u64']]],
      [2, 'throttling', 'msg', [u(1, 'periods'), u(2, 'throttled_periods'), u(3, 'throttled_time')]],
    ],
  ],
  [
    4,
    'memory',
    'msg',
    [
      ...[
        'cache',
        'rss',
        'rss_huge',
        'mapped_file',
        'dirty',
        'writeback',
        'pg_pg_in',
        'pg_pg_out',
        'pg_fault',
        'pg_maj_fault',
        'inactive_anon',
        'active_anon',
        'inactive_file',
        'active_file',
        'unevictable',
        'hierarchical_memory_limit',
        'hierarchical_swap_limit',
        'total_cache',
        'total_rss',
        'total_rss_huge',
        'total_mapped_file',
        'total_dirty',
        'total_writeback',
        'total_pg_pg_in',
        'total_pg_pg_out',
        'total_pg_fault',
        'total_pg_maj_fault',
        'total_inactive_anon',
        'total_active_anon',
        'total_inactive_file',
        'total_active_file',
        'total_unevictable',
      ].map((name, i) => u(i + 1, name)),
      [33, 'usage', 'msg', V1_MEMORY_ENTRY],
      [34, 'swap', 'msg', V1_MEMORY_ENTRY],
      [35, 'kernel', 'msg', V1_MEMORY_ENTRY],
      [36, 'kernel_tcp', 'msg', V1_MEMORY_ENTRY],
    ],
  ],
  [
    5,
    'blkio',
    'msg',
    [
      'io_service_bytes_recursive',
      'io_serviced_recursive',
      'io_queued_recursive',
      'io_service_time_recursive',
      'io_wait_time_recursive',
      'io_merged_recursive',
      'io_time_recursive',
      'sectors_recursive',
    ].map((name, i): Field => [i + 1, name, 'rep-msg', V1_BLKIO_ENTRY]),
  ],
  [6, 'rdma', 'msg', RDMA],
  [
    7,
    'network',
    'rep-msg',
    [
      [1, 'name', 'string'],
      ...[
        'rx_bytes',
        'rx_packets',
        'rx_errors',
        'rx_dropped',
        'tx_bytes',
        'tx_packets',
        'tx_errors',
        'tx_dropped',
      ].map((name, i) => u(i + 2, name)),
    ],
  ],
  [
    8,
    'cgroup_stats',
    'msg',
    ['nr_sleeping', 'nr_running', 'nr_stopped', 'nr_uninterruptible', 'nr_io_wait'].map((name, i) =>
      u(i + 1, name),
    ),
  ],
  [9, 'memory_oom_control', 'msg', [u(1, 'oom_kill_disable'), u(2, 'under_oom'), u(3, 'oom_kill')]],
];

const V2_METRICS: Schema = [
  [1, 'pids', 'msg', PIDS],
  [
    2,
    'cpu',
    'msg',
    ['usage_usec', 'user_usec', 'system_usec', 'nr_periods', 'nr_throttled', 'throttled_usec'].map(
      (name, i) => u(i + 1, name),
    ),
  ],
  [
    4,
    'memory',
    'msg',
    [
      'anon',
      'file',
      'kernel_stack',
      'slab',
      'sock',
      'shmem',
      'file_mapped',
      'file_dirty',
      'file_writeback',
      'anon_thp',
      'inactive_anon',
      'active_anon',
      'inactive_file',
      'active_file',
      'unevictable',
      'slab_reclaimable',
      'slab_unreclaimable',
      'pgfault',
      'pgmajfault',
      'workingset_refault',
      'workingset_activate',
      'workingset_nodereclaim',
      'pgrefill',
      'pgscan',
      'pgsteal',
      'pgactivate',
      'pgdeactivate',
      'pglazyfree',
      'pglazyfreed',
      'thp_fault_alloc',
      'thp_collapse_alloc',
      'usage',
      'usage_limit',
      'swap_usage',
      'swap_limit',
    ].map((name, i) => u(i + 1, name)),
  ],
  [5, 'rdma', 'msg', RDMA],
  [
    6,
    'io',
    'msg',
    [
      [
        1,
        'usage',
        'rep-msg',
        ['major', 'minor', 'rbytes', 'wbytes', 'rios', 'wios'].map((name, i) => u(i + 1, name)),
      ],
    ],
  ],
  [7, 'hugetlb', 'rep-msg', [u(1, 'current'), u(2, 'max'), [3, 'pagesize', 'string']]],
  [8, 'memory_events', 'msg', ['low', 'high', 'max', 'oom', 'oom_kill'].map((name, i) => u(i + 1, name))],
];

export const CGROUPS_V1_METRICS = 'io.containerd.cgroups.v1.Metrics';
export const CGROUPS_V2_METRICS = 'io.containerd.cgroups.v2.Metrics';

/** A decoded message: numbers as bigint, nested messages as objects, in wire order of appearance. */
export type Decoded = { [name: string]: bigint | string | Decoded | Decoded[] | bigint[] };

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  varint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error('truncated varint');
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new Error('varint too long');
    }
  }
  bytes(): Buffer {
    const len = Number(this.varint());
    if (this.pos + len > this.buf.length) throw new Error('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function decode(buf: Buffer, schema: Schema): Decoded {
  const out: Decoded = {};
  const r = new Reader(buf);
  while (!r.done) {
    const tag = Number(r.varint());
    const num = tag >>> 3;
    const wire = tag & 7;
    const f = schema.find(([n]) => n === num);
    if (!f) {
      r.skip(wire);
      continue;
    }
    const [, name, kind, sub] = f;
    if (kind === 'u64') {
      if (wire === 0) out[name] = r.varint();
      else r.skip(wire);
    } else if (kind === 'string') out[name] = r.bytes().toString('utf8');
    else if (kind === 'msg') out[name] = decode(r.bytes(), sub!);
    else if (kind === 'rep-msg') {
      if (!out[name]) out[name] = [];
      (out[name] as Decoded[]).push(decode(r.bytes(), sub!));
    } else {
      if (!out[name]) out[name] = [];
      const list = out[name] as bigint[];
      if (wire === 2) {
        const packed = new Reader(r.bytes());
        while (!packed.done) list.push(packed.varint());
      } else list.push(r.varint());
    }
  }
  return out;
}

/** Decodes a cgroups v1 or v2 Metrics Any; undefined for another type. */
export function decodeMetrics(typeUrl: string, value: Buffer): { version: 1 | 2; data: Decoded } | undefined {
  const name = typeUrl.slice(typeUrl.lastIndexOf('/') + 1);
  if (name === CGROUPS_V1_METRICS) return { version: 1, data: decode(value, V1_METRICS) };
  if (name === CGROUPS_V2_METRICS) return { version: 2, data: decode(value, V2_METRICS) };
  return undefined;
}

/** The message as json.MarshalIndent(v, "", "  ") writes the Go struct: schema order, zero values left out. */
export function metricsJson(version: 1 | 2, data: Decoded): string {
  return goJson(data, version === 1 ? V1_METRICS : V2_METRICS, '');
}

function goJson(msg: Decoded, schema: Schema, indent: string): string {
  const inner = `${indent}  `;
  const parts: string[] = [];
  for (const [, name, kind, sub] of schema) {
    const v = msg[name];
    if (v === undefined) continue;
    let text: string | undefined;
    if (kind === 'u64') text = v === 0n ? undefined : String(v);
    else if (kind === 'string') text = v === '' ? undefined : JSON.stringify(v);
    else if (kind === 'msg') text = goJson(v as Decoded, sub!, inner);
    else if (kind === 'rep-msg') {
      const list = v as Decoded[];
      text = list.length
        ? `[\n${list.map((m) => `${inner}  ${goJson(m, sub!, `${inner}  `)}`).join(',\n')}\n${inner}]`
        : undefined;
    } else {
      const list = v as bigint[];
      text = list.length ? `[\n${list.map((n) => `${inner}  ${n}`).join(',\n')}\n${inner}]` : undefined;
    }
    if (text !== undefined) parts.push(`${inner}${JSON.stringify(name)}: ${text}`);
  }
  return parts.length ? `{\n${parts.join(',\n')}\n${indent}}` : '{}';
}

const n = (v: unknown): string => (typeof v === 'bigint' ? String(v) : '0');
const at = (m: Decoded | undefined, ...path: string[]): unknown => {
  let cur: unknown = m;
  for (const p of path) cur = (cur as Decoded | undefined)?.[p];
  return cur;
};

/** The METRIC/VALUE rows ctr prints for each version (tab separated, for the tabwriter). */
export function metricsRows(version: 1 | 2, d: Decoded): string {
  let out = 'METRIC\tVALUE\t\n';
  const row = (k: string, v: string) => {
    out += `${k}\t${v}\t\n`;
  };
  if (version === 1) {
    if (d.memory) {
      row('memory.usage_in_bytes', n(at(d, 'memory', 'usage', 'usage')));
      row('memory.limit_in_bytes', n(at(d, 'memory', 'usage', 'limit')));
      row('memory.stat.cache', n(at(d, 'memory', 'total_cache')));
    }
    if (d.cpu) {
      row('cpuacct.usage', n(at(d, 'cpu', 'usage', 'total')));
      row('cpuacct.usage_percpu', `[${((at(d, 'cpu', 'usage', 'per_cpu') as bigint[]) ?? []).join(' ')}]`);
    }
    if (d.pids) {
      row('pids.current', n(at(d, 'pids', 'current')));
      row('pids.limit', n(at(d, 'pids', 'limit')));
    }
    return out;
  }
  if (d.pids) {
    row('pids.current', n(at(d, 'pids', 'current')));
    row('pids.limit', n(at(d, 'pids', 'limit')));
  }
  if (d.cpu) {
    for (const k of [
      'usage_usec',
      'user_usec',
      'system_usec',
      'nr_periods',
      'nr_throttled',
      'throttled_usec',
    ])
      row(`cpu.${k}`, n(at(d, 'cpu', k)));
  }
  if (d.memory) {
    for (const k of ['usage', 'usage_limit', 'swap_usage', 'swap_limit'])
      row(`memory.${k}`, n(at(d, 'memory', k)));
  }
  return out;
}
