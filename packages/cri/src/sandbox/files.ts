import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import { type wire, writeFileAtomic } from '@berth/api';
import { MNT, MS, mount, unmount } from '@berth/sys';

/** containerd's defaultShmSize: 64 MiB. */
export const SHM_SIZE = 64 * 1024 * 1024;

/** The files a pod's containers bind-mount from the host, under the sandbox's root directory. */
export interface SandboxFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
}

export function sandboxFiles(rootDir: string): SandboxFiles {
  return {
    hostname: join(rootDir, 'hostname'),
    hosts: join(rootDir, 'hosts'),
    resolvConf: join(rootDir, 'resolv.conf'),
  };
}

/** resolv.conf from the pod's DNSConfig, worded as containerd's parseDNSOptions writes it. */
export function resolvConfFromDns(dns: wire.cri.DNSConfig): string {
  let out = '';
  if (dns.searches.length > 0) out += `search ${dns.searches.join(' ')}\n`;
  for (const s of dns.servers) out += `nameserver ${s}\n`;
  if (dns.options.length > 0) out += `options ${dns.options.join(' ')}\n`;
  return out;
}

/**
 * containerd's setupSandboxFiles: the hostname file (the pod's hostname, or the host's for a
 * pod that names none), a copy of the host's /etc/hosts, and resolv.conf from the DNSConfig
 * (a copy of the host's when the pod gives none).
 */
export async function writeSandboxFiles(
  rootDir: string,
  config: wire.cri.PodSandboxConfig,
): Promise<SandboxFiles> {
  await mkdir(rootDir, { recursive: true, mode: 0o755 });
  const files = sandboxFiles(rootDir);
  await writeFileAtomic(files.hostname, `${config.hostname || osHostname()}\n`);
  await copyFile('/etc/hosts', files.hosts).catch(async (e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
    await writeFileAtomic(files.hosts, '');
  });
  const dns = config.dnsConfig;
  if (dns && (dns.servers.length > 0 || dns.searches.length > 0 || dns.options.length > 0)) {
    await writeFileAtomic(files.resolvConf, resolvConfFromDns(dns));
  } else {
    await copyFile('/etc/resolv.conf', files.resolvConf).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
      await writeFileAtomic(files.resolvConf, '');
    });
  }
  return files;
}

/** The mount point of the pod's /dev/shm, true when something is mounted there. */
export async function isMounted(path: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8');
  return mounts.split('\n').some((l) => l.split(' ')[4] === path);
}

/**
 * The pod's own /dev/shm: a 64 MiB tmpfs the pod's containers share (not for host-IPC pods).
 * mount(2) itself, not mount(8): a process per pod start costs several milliseconds.
 */
export async function mountShm(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  if (await isMounted(path)) return;
  mount('shm', path, 'tmpfs', MS.NODEV | MS.NOEXEC | MS.NOSUID, `mode=1777,size=${SHM_SIZE}`);
}

/** Unmounts the pod's /dev/shm (every stacked mount, lazily: a container may still hold it) and removes the directory. */
export async function unmountShm(path: string): Promise<void> {
  for (let i = 0; i < 8 && (await isMounted(path)); i++) unmount(path, MNT.DETACH);
  await rm(path, { recursive: true, force: true });
}
