/** Where the OCI runtime keeps its state unless the runtime options say otherwise. */
export const DEFAULT_RUNTIME_ROOT = '/run/berth/runc';
