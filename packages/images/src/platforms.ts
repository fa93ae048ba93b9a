import { InvalidArgumentError, type Platform } from '@berth/api';

export type { Platform };

const KNOWN_OS = new Set([
  'aix',
  'android',
  'darwin',
  'dragonfly',
  'freebsd',
  'hurd',
  'illumos',
  'ios',
  'js',
  'linux',
  'nacl',
  'netbsd',
  'openbsd',
  'plan9',
  'solaris',
  'windows',
  'zos',
]);
const KNOWN_ARCH = new Set([
  '386',
  'amd64',
  'amd64p32',
  'arm',
  'armbe',
  'arm64',
  'arm64be',
  'ppc64',
  'ppc64le',
  'loong64',
  'mips',
  'mipsle',
  'mips64',
  'mips64le',
  'mips64p32',
  'mips64p32le',
  'ppc',
  'riscv',
  'riscv64',
  's390',
  's390x',
  'sparc',
  'sparc64',
  'wasm',
]);
const COMPONENT_RE = /^[A-Za-z0-9_-]+$/;

/** Node's process.arch in Go's GOARCH words. */
const NODE_ARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: '386',
  arm: 'arm',
  arm64: 'arm64',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
};

function hostOS(): string {
  return process.platform === 'win32' ? 'windows' : process.platform;
}

function hostArch(): string {
  return NODE_ARCH[process.arch] ?? process.arch;
}

function hostVariant(arch: string): string {
  if (arch === 'arm64') return 'v8';
  if (arch === 'arm') {
    const v = (process.config.variables as Record<string, unknown>).arm_version;
    return v ? `v${v}` : 'v7';
  }
  return '';
}

function normalizeOS(os: string): string {
  if (os === '') return hostOS();
  const lower = os.toLowerCase();
  return lower === 'macos' ? 'darwin' : lower;
}

function normalizeArch(arch: string, variant: string): [string, string] {
  let a = arch.toLowerCase();
  let v = variant.toLowerCase();
  switch (a) {
    case 'i386':
      a = '386';
      v = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      a = 'amd64';
      if (v === 'v1') v = '';
      break;
    case 'aarch64':
    case 'arm64':
      a = 'arm64';
      if (v === '8' || v === 'v8') v = '';
      break;
    case 'armhf':
      a = 'arm';
      v = 'v7';
      break;
    case 'armel':
      a = 'arm';
      v = 'v6';
      break;
    case 'arm':
      if (v === '' || v === '7') v = 'v7';
      else if (v === '5' || v === '6' || v === '8') v = `v${v}`;
      break;
  }
  return [a, v];
}

function make(os: string, architecture: string, variant: string): Platform {
  const p: Platform = { os, architecture };
  if (variant) p.variant = variant;
  return p;
}

/** Canonical form: lower case, `x86_64` is `amd64`, `aarch64` is `arm64`, arm defaults to v7... */
export function normalizePlatform(p: Platform): Platform {
  const [architecture, variant] = normalizeArch(p.architecture ?? '', p.variant ?? '');
  const out: Platform = { ...p, os: normalizeOS(p.os ?? ''), architecture };
  if (variant) out.variant = variant;
  else delete out.variant;
  return out;
}

/** The platform this process runs on (containerd's DefaultSpec), e.g. linux/amd64. */
export function defaultPlatform(): Platform {
  const arch = hostArch();
  return make(hostOS(), arch, hostVariant(arch));
}

/**
 * Parses `os`, `arch`, `os/arch` or `os/arch/variant` as containerd does: one component is
 * an OS (architecture of this host) or an architecture (OS of this host); arm64 with three
 * components keeps `v8`. InvalidArgument naming the specifier otherwise.
 */
export function parsePlatform(specifier: string): Platform {
  if (specifier.includes('*')) {
    throw new InvalidArgumentError(
      `invalid platform ${JSON.stringify(specifier)}: wildcards not yet supported`,
    );
  }
  const parts = specifier.split('/');
  for (const part of parts) {
    if (!COMPONENT_RE.test(part)) {
      throw new InvalidArgumentError(
        `invalid platform ${JSON.stringify(specifier)}: component ${JSON.stringify(part)} must match ${COMPONENT_RE.source}`,
      );
    }
  }
  switch (parts.length) {
    case 1: {
      const os = normalizeOS(parts[0]!);
      if (KNOWN_OS.has(os)) {
        const arch = hostArch();
        const v = hostVariant(arch);
        return make(os, arch, arch === 'arm' && v !== 'v7' ? v : '');
      }
      let [arch, variant] = normalizeArch(parts[0]!, '');
      if (arch === 'arm' && variant === 'v7') variant = '';
      if (KNOWN_ARCH.has(arch)) return make(hostOS(), arch, variant);
      throw new InvalidArgumentError(
        `invalid platform ${JSON.stringify(specifier)}: unknown operating system or architecture`,
      );
    }
    case 2: {
      let [arch, variant] = normalizeArch(parts[1]!, '');
      if (arch === 'arm' && variant === 'v7') variant = '';
      return make(normalizeOS(parts[0]!), arch, variant);
    }
    case 3: {
      let [arch, variant] = normalizeArch(parts[1]!, parts[2]!);
      if (arch === 'arm64' && variant === '') variant = 'v8';
      return make(normalizeOS(parts[0]!), arch, variant);
    }
    default:
      throw new InvalidArgumentError(
        `invalid platform ${JSON.stringify(specifier)}: cannot parse platform specifier`,
      );
  }
}

/** `os/arch[/variant]`; `unknown` without an OS (as containerd). */
export function formatPlatform(p: Platform): string {
  if (!p.os) return 'unknown';
  return [p.os, p.architecture, p.variant].filter((x) => x).join('/');
}

/** Matches platforms and orders the ones it matches, best first (containerd's MatchComparer). */
export interface PlatformMatcher {
  match(p: Platform): boolean;
  /** True when `a` should be preferred over `b`. */
  less(a: Platform, b: Platform): boolean;
  readonly description: string;
}

function sameNormalized(a: Platform, b: Platform): boolean {
  return a.os === b.os && a.architecture === b.architecture && (a.variant ?? '') === (b.variant ?? '');
}

function exact(p: Platform): (q: Platform) => boolean {
  const n = normalizePlatform(p);
  return (q) => sameNormalized(n, normalizePlatform(q));
}

/** Matches any of the platforms, preferring them in the order given. */
export function orderedPlatforms(...platforms: Platform[]): PlatformMatcher {
  const matchers = platforms.map(exact);
  return {
    match: (p) => matchers.some((m) => m(p)),
    less: (a, b) => {
      for (const m of matchers) {
        const am = m(a);
        const bm = m(b);
        if (am && !bm) return true;
        if (am || bm) return false;
      }
      return false;
    },
    description: platforms.map(formatPlatform).join(', '),
  };
}

/** Matches any of the platforms, with no preference. */
export function anyPlatform(...platforms: Platform[]): PlatformMatcher {
  const matchers = platforms.map(exact);
  return {
    match: (p) => matchers.some((m) => m(p)),
    less: () => false,
    description: platforms.map(formatPlatform).join(', '),
  };
}

/** Matches every platform. */
export function allPlatforms(): PlatformMatcher {
  return { match: () => true, less: () => false, description: 'all platforms' };
}

/** The platforms a host of `p` can run, best first: amd64 also runs 386, arm64 runs arm/v8..v5. */
function platformVector(p: Platform): Platform[] {
  const out: Platform[] = [p];
  const base = { os: p.os, ...(p.osVersion ? { osVersion: p.osVersion } : {}) };
  const version = Number.parseInt((p.variant ?? '').replace(/^v/, ''), 10);
  switch (p.architecture) {
    case 'amd64':
      if (Number.isInteger(version) && version > 1) {
        for (let v = version - 1; v >= 1; v--) out.push({ ...base, architecture: 'amd64', variant: `v${v}` });
      }
      out.push({ ...base, architecture: '386' });
      break;
    case 'arm':
      if (Number.isInteger(version) && version > 5) {
        for (let v = version - 1; v >= 5; v--) out.push({ ...base, architecture: 'arm', variant: `v${v}` });
      }
      break;
    case 'arm64':
      out.push(...platformVector({ ...base, architecture: 'arm', variant: p.variant || 'v8' }));
      break;
  }
  return out;
}

/**
 * containerd's platforms.Only: `p` and what it can also run, in that order of preference
 * (linux/amd64 also takes linux/386; linux/arm64 takes arm/v8 down to arm/v5).
 */
export function onlyPlatform(p: Platform): PlatformMatcher {
  const m = orderedPlatforms(...platformVector(normalizePlatform(p)));
  return { ...m, description: formatPlatform(normalizePlatform(p)) };
}

/** Only `p` itself (canonical forms match: `arm64` matches `arm64/v8`). */
export function onlyPlatformStrict(p: Platform): PlatformMatcher {
  return orderedPlatforms(normalizePlatform(p));
}

/** The default matcher: this host's platform (linux/amd64 here), as containerd's platforms.Default. */
export function defaultPlatformMatcher(): PlatformMatcher {
  return onlyPlatform(defaultPlatform());
}

/**
 * What callers pass around: a matcher, a platform, a specifier string, a list of them
 * (any of them, in order), or 'all'.
 */
export type PlatformSpec = PlatformMatcher | Platform | string | ReadonlyArray<Platform | string> | 'all';

/** Turns a PlatformSpec into a matcher; undefined means this host's platform. */
export function platformMatcher(spec?: PlatformSpec): PlatformMatcher {
  if (spec === undefined) return defaultPlatformMatcher();
  if (spec === 'all') return allPlatforms();
  if (typeof spec === 'string') return onlyPlatform(parsePlatform(spec));
  if (Array.isArray(spec)) {
    const list = spec.map((s) => (typeof s === 'string' ? parsePlatform(s) : s));
    if (list.length === 1) return onlyPlatform(list[0]!);
    return orderedPlatforms(...list);
  }
  if (typeof (spec as PlatformMatcher).match === 'function') return spec as PlatformMatcher;
  return onlyPlatform(spec as Platform);
}
