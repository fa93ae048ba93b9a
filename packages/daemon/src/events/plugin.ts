import { PluginType } from '@berth/api';
import type { DaemonRegistration } from '../registry';
import { Exchange } from './exchange';

/** io.containerd.event.v1 "exchange": the in-process event bus every service publishes to. */
export const exchangePlugin: DaemonRegistration<undefined, Exchange> = {
  type: PluginType.Event,
  id: 'exchange',
  init: (ic) => new Exchange(ic.log),
};
