export { MetadataContainerStore, validateContainer } from './containers';
export { MetadataContentStore } from './content';
export { MetadataDB, type MetadataDBOptions, type MutationCallback, openMetadataDB } from './db';
export {
  GC_REF_CONTENT_LABEL,
  GC_REF_SNAPSHOT_PREFIX,
  GC_ROOT_LABEL,
  type GCNode,
  type GCRemoved,
  type GCReport,
  labelReferences,
  type ResourceKind,
} from './gc';
export { MetadataImageStore, validateImage } from './images';
export { parseExpiry, SqliteLeaseManager, validateLeaseResource } from './leases';
export { SqliteNamespaceStore } from './namespaces';
export { RwLock } from './rw-lock';
export { MIGRATIONS, type Migration, type MigrationResult, migrate, SCHEMA_VERSION } from './schema';
export {
  INHERITED_LABEL_PREFIX,
  inheritedLabels,
  MetadataSnapshotter,
  SNAPSHOT_REF_LABEL,
} from './snapshots';
