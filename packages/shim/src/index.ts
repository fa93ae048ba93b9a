/**
 * @berth/shim: containerd-shim-berth-v1, a containerd runtime v2 shim (the task API over
 * ttrpc) that drives an OCI runtime binary (runc by default, crun works) and lets one
 * shim process serve many containers.
 */
export {
  addressPath,
  DEFAULT_SOCKET_DIR,
  GROUP_ANNOTATIONS,
  type Grouping,
  groupKey,
  socketAddress,
} from './address';
export { Cgroup, type CgroupMode, cgroupMode, parseProcCgroup } from './cgroups';
export { parseFlags, type ShimFlags } from './flags';
export { main } from './main';
export { decodeRuncOptions, decodeShimMessage, encodeShimMessage, type RuncOptions } from './protos';
export { type EventSink, Publisher, TOPICS } from './publisher';
export { DEFAULT_RUNTIME_ROOT, type RunningShim, serve } from './serve';
export { LOG_SERVICE, TASK_SERVICE, TaskService } from './service';
export { criLogOf, resolveStdio, type StdioPaths } from './stdio';
export { SHIM_VERSION } from './version';
