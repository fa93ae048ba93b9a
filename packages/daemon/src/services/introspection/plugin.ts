import { PluginType } from '@berth/api';
import type { DaemonRegistration } from '../../registry';
import { IntrospectionLocal } from './local';
import { IntrospectionServer } from './server';

export const introspectionServicePlugin: DaemonRegistration<undefined, IntrospectionLocal> = {
  type: PluginType.Service,
  id: 'introspection-service',
  init: (ic) => new IntrospectionLocal(() => ic.plugins(), ic.root),
};

export const introspectionGrpcPlugin: DaemonRegistration<undefined, IntrospectionServer> = {
  type: PluginType.GRPC,
  id: 'introspection',
  requires: [PluginType.Service],
  init: async (ic) => {
    const local = await ic.getById<IntrospectionLocal>(PluginType.Service, 'introspection-service');
    local.setRoot(ic.root);
    return new IntrospectionServer(local, ic.log);
  },
};
