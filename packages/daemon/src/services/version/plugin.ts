import { PluginType } from '@berth/api';
import type { DaemonRegistration } from '../../registry';
import { REVISION, VERSION } from '../../version';
import { VersionServer } from './server';

export const versionGrpcPlugin: DaemonRegistration<undefined, VersionServer> = {
  type: PluginType.GRPC,
  id: 'version',
  init: (ic) => new VersionServer(VERSION, REVISION, ic.log),
};
