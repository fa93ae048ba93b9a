import { readFileSync, statSync } from 'node:fs';
import { FailedPreconditionError, InvalidArgumentError, type wire } from '@berth/api';

/** Which Linux security modules the host runs (what a profile or label needs to be applied). */
export interface LsmHost {
  apparmor: boolean;
  selinux: boolean;
}

let detected: LsmHost | undefined;

/**
 * AppArmor is on when the module says so (the test libapparmor's aa_is_enabled makes);
 * SELinux when selinuxfs is mounted where libselinux looks for it.
 */
export function detectLsmHost(): LsmHost {
  if (!detected) {
    let apparmor = false;
    try {
      apparmor = readFileSync('/sys/module/apparmor/parameters/enabled', 'utf8').trim() === 'Y';
    } catch {}
    let selinux = false;
    try {
      selinux = statSync('/sys/fs/selinux/enforce').isFile();
    } catch {}
    detected = { apparmor, selinux };
  }
  return detected;
}

type SecurityProfile = wire.cri.SecurityProfile;

/** The deprecated string form of a profile (`runtime/default`, `docker/default`, `unconfined`, `localhost/<ref>`). */
export function profileFromPath(path: string, field: string): SecurityProfile | undefined {
  if (path === '') return undefined;
  if (path === 'runtime/default' || path === 'docker/default')
    return { profileType: 'RuntimeDefault', localhostRef: '' };
  if (path === 'unconfined') return { profileType: 'Unconfined', localhostRef: '' };
  if (path.startsWith('localhost/'))
    return { profileType: 'Localhost', localhostRef: path.slice('localhost/'.length) };
  throw new InvalidArgumentError(
    `${field} "${path}" is invalid: want runtime/default, unconfined or localhost/<path>`,
  );
}

function describe(sp: SecurityProfile): string {
  if (sp.profileType === 'Localhost') return `localhost/${sp.localhostRef.replace(/^localhost\//, '')}`;
  return sp.profileType === 'RuntimeDefault' ? 'runtime/default' : sp.profileType;
}

/**
 * The AppArmor profile of a security context, checked against the host: berth confines
 * nothing with AppArmor, so on a host without it (this kit's) only no profile or
 * `unconfined` is accepted, as containerd 1.6's generateApparmorSpecOpts does (it refuses
 * RuntimeDefault and Localhost there with "apparmor is not supported"); the error names the
 * field and the value. On a host with AppArmor a Localhost profile that the kernel has loaded
 * is set on the process; RuntimeDefault is refused, berth having no default AppArmor profile
 * to load.
 */
export function checkAppArmor(
  field: string,
  profile: SecurityProfile | undefined,
  deprecatedPath: string,
  privileged: boolean,
  host: LsmHost = detectLsmHost(),
): string | undefined {
  const sp = profile ?? profileFromPath(deprecatedPath, `${field}.apparmor_profile`);
  if (!sp || sp.profileType === 'Unconfined') return undefined;
  if (sp.profileType !== 'Localhost' && sp.localhostRef)
    throw new InvalidArgumentError(
      `${field}.apparmor: localhost_ref "${sp.localhostRef}" is only valid with profile type Localhost`,
    );
  if (!host.apparmor)
    throw new FailedPreconditionError(
      `${field}.apparmor "${describe(sp)}" cannot be applied: AppArmor is not enabled on this host (only unset or unconfined is accepted)`,
    );
  if (sp.profileType === 'RuntimeDefault') {
    if (privileged) return undefined;
    throw new FailedPreconditionError(
      `${field}.apparmor "runtime/default" cannot be applied: berth has no default AppArmor profile; name a loaded one with localhost/<profile>`,
    );
  }
  if (sp.profileType !== 'Localhost')
    throw new InvalidArgumentError(`${field}.apparmor: unknown profile type "${sp.profileType}"`);
  const name = sp.localhostRef.replace(/^localhost\//, '');
  let loaded = '';
  try {
    loaded = readFileSync('/sys/kernel/security/apparmor/profiles', 'utf8');
  } catch {}
  if (!loaded.split('\n').some((l) => l.startsWith(`${name} (`)))
    throw new InvalidArgumentError(
      `${field}.apparmor "localhost/${name}": no such AppArmor profile is loaded`,
    );
  return name;
}

/**
 * SELinux options are accepted when empty; any user, role, type or level asks for a label
 * berth cannot apply (SELinux is not enabled here, and berth sets no labels anyway), so it is
 * refused naming the field rather than run unlabelled. containerd 1.6 with SELinux off drops
 * the options silently; a pod that asks for confinement should learn it does not get it.
 */
export function checkSelinux(
  field: string,
  options: wire.cri.SELinuxOption | undefined,
  host: LsmHost = detectLsmHost(),
): void {
  if (!options) return;
  const set = (['user', 'role', 'type', 'level'] as const).filter((k) => options[k] !== '');
  if (set.length === 0) return;
  const value = set.map((k) => `${k}=${options[k]}`).join(',');
  const why = host.selinux ? 'berth does not apply SELinux labels' : 'SELinux is not enabled on this host';
  throw new FailedPreconditionError(`${field}.selinux_options "${value}" cannot be applied: ${why}`);
}
