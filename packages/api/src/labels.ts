import { InvalidArgumentError } from './errors';

export type Labels = Record<string, string>;

/** containerd bounds each label's key plus value at 4096 bytes. */
export const MAX_LABEL_SIZE = 4096;

export function validateLabel(key: string, value: string): void {
  if (key === '') throw new InvalidArgumentError('label key must not be empty');
  const size = Buffer.byteLength(key) + Buffer.byteLength(value);
  if (size > MAX_LABEL_SIZE) {
    const shown = key.length > 64 ? `${key.slice(0, 64)}...` : key;
    throw new InvalidArgumentError(
      `label key and value greater than maximum size (${MAX_LABEL_SIZE} bytes), key: "${shown}"`,
    );
  }
}

export function validateLabels(labels: Labels | undefined): void {
  if (!labels) return;
  for (const [k, v] of Object.entries(labels)) validateLabel(k, v);
}

/**
 * Applies an update with containerd's field-path semantics: with no paths all labels are
 * replaced; `labels` replaces all; `labels.<key>` sets (or, for an empty/missing value, removes) one.
 * Returns undefined when the paths do not touch labels at all.
 */
export function applyLabelPaths(
  current: Labels,
  update: Labels,
  fieldpaths: readonly string[],
): Labels | undefined {
  if (fieldpaths.length === 0) return { ...update };
  let out: Labels | undefined;
  for (const path of fieldpaths) {
    if (path === 'labels') {
      out = { ...update };
      continue;
    }
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      out ??= { ...current };
      const value = update[key];
      if (value === undefined || value === '') delete out[key];
      else out[key] = value;
    }
  }
  return out;
}
