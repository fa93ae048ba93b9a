import type { Digest } from './digest';

/** An OCI content descriptor. */
export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  annotations?: Record<string, string>;
  urls?: string[];
  platform?: Platform;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  osVersion?: string;
  osFeatures?: string[];
}
