import type { Registration } from '@berth/api';
import { exchangePlugin } from './events/plugin';
import { gcSchedulerPlugin } from './gc/plugin';
import { contentPlugin } from './plugins/content';
import { criPlugin } from './plugins/cri';
import { metadataPlugin } from './plugins/metadata';
import { nativePlugin, overlayfsPlugin } from './plugins/snapshotters';
import { tasksGrpcPlugin, tasksServicePlugin } from './plugins/tasks';
import { taskRuntimePlugin, ttrpcEventsPlugin } from './runtime/plugin';
import { containersGrpcPlugin, containersServicePlugin } from './services/containers/plugin';
import { contentGrpcPlugin, contentServicePlugin } from './services/content/plugin';
import { diffGrpcPlugin, diffServicePlugin, walkingDifferPlugin } from './services/diff/plugin';
import { eventsGrpcPlugin } from './services/events/plugin';
import { imagesGrpcPlugin, imagesServicePlugin } from './services/images/plugin';
import { introspectionGrpcPlugin, introspectionServicePlugin } from './services/introspection/plugin';
import { leasesGrpcPlugin, leasesServicePlugin } from './services/leases/plugin';
import { namespacesGrpcPlugin, namespacesServicePlugin } from './services/namespaces/plugin';
import { snapshotsGrpcPlugin, snapshotsServicePlugin } from './services/snapshots/plugin';
import { streamingGrpcPlugin, streamManagerPlugin } from './services/streaming/plugin';
import { transferGrpcPlugin, transferPlugin } from './services/transfer/plugin';
import { versionGrpcPlugin } from './services/version/plugin';

/** The only list of berthd's plugins; the registry orders them by what they require. */
export function builtins(): Registration<any, any>[] {
  return [
    exchangePlugin,
    contentPlugin,
    overlayfsPlugin,
    nativePlugin,
    metadataPlugin,
    gcSchedulerPlugin,
    contentServicePlugin,
    imagesServicePlugin,
    containersServicePlugin,
    snapshotsServicePlugin,
    walkingDifferPlugin,
    diffServicePlugin,
    streamManagerPlugin,
    transferPlugin,
    ttrpcEventsPlugin,
    taskRuntimePlugin,
    tasksServicePlugin,
    namespacesServicePlugin,
    leasesServicePlugin,
    introspectionServicePlugin,
    versionGrpcPlugin,
    introspectionGrpcPlugin,
    namespacesGrpcPlugin,
    leasesGrpcPlugin,
    contentGrpcPlugin,
    imagesGrpcPlugin,
    containersGrpcPlugin,
    eventsGrpcPlugin,
    snapshotsGrpcPlugin,
    diffGrpcPlugin,
    streamingGrpcPlugin,
    transferGrpcPlugin,
    tasksGrpcPlugin,
    criPlugin,
  ];
}
