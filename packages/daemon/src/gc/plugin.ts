import { InvalidArgumentError, PluginType } from '@berth/api';
import type { DaemonRegistration } from '../registry';
import {
  type Collector,
  DEFAULT_POLICY,
  formatDuration,
  GCScheduler,
  parseDuration,
  type SchedulerPolicy,
} from './scheduler';

/** `[plugins."io.containerd.gc.v1.scheduler"]`, containerd's keys and defaults. */
export interface GCConfig {
  pause_threshold: number;
  deletion_threshold: number;
  mutation_threshold: number;
  schedule_delay: string;
  startup_delay: string;
}

const at = (key: string) => `plugins."io.containerd.gc.v1.scheduler".${key}`;

function count(key: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new InvalidArgumentError(`invalid config: ${at(key)} = ${v}: expected a non-negative integer`);
  }
  return v;
}

function delay(key: string, v: string): number {
  try {
    return parseDuration(v);
  } catch {
    throw new InvalidArgumentError(
      `invalid config: ${at(key)} = "${v}": expected a duration such as "100ms"`,
    );
  }
}

/** The policy a config asks for; InvalidArgument naming the key for a value out of range. */
export function policyOf(c: GCConfig): { policy: SchedulerPolicy; warnings: string[] } {
  const warnings: string[] = [];
  let pause = c.pause_threshold;
  if (!Number.isFinite(pause) || pause < 0) {
    throw new InvalidArgumentError(`invalid config: ${at('pause_threshold')} = ${pause}: expected 0 to 0.5`);
  }
  if (pause > 0.5) {
    // containerd caps it there rather than failing: collections at most half the time.
    warnings.push(`${at('pause_threshold')} = ${pause} is above the maximum 0.5: using 0.5`);
    pause = 0.5;
  }
  return {
    policy: {
      pauseThreshold: pause,
      deletionThreshold: count('deletion_threshold', c.deletion_threshold),
      mutationThreshold: count('mutation_threshold', c.mutation_threshold),
      scheduleDelayMs: delay('schedule_delay', c.schedule_delay),
      startupDelayMs: delay('startup_delay', c.startup_delay),
    },
    warnings,
  };
}

export const gcSchedulerPlugin: DaemonRegistration<GCConfig, GCScheduler> = {
  type: PluginType.GC,
  id: 'scheduler',
  requires: [PluginType.Metadata],
  config: {
    pause_threshold: DEFAULT_POLICY.pauseThreshold,
    deletion_threshold: DEFAULT_POLICY.deletionThreshold,
    mutation_threshold: DEFAULT_POLICY.mutationThreshold,
    schedule_delay: formatDuration(DEFAULT_POLICY.scheduleDelayMs),
    startup_delay: formatDuration(DEFAULT_POLICY.startupDelayMs),
  },
  init: async (ic) => {
    const { policy, warnings } = policyOf(ic.config);
    for (const w of warnings) ic.log.warn(w);
    const db = await ic.get<Collector>(PluginType.Metadata);
    const s = new GCScheduler(db, { ...policy, log: ic.log });
    // What containerd exports (fmt.Sprint of each value).
    ic.exports.PauseThreshold = String(policy.pauseThreshold);
    ic.exports.DeletionThreshold = String(policy.deletionThreshold);
    ic.exports.MutationThreshold = String(policy.mutationThreshold);
    ic.exports.ScheduleDelay = formatDuration(policy.scheduleDelayMs);
    s.start();
    return s;
  },
};
