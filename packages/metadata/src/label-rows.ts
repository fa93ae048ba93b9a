import type { Labels } from '@berth/api';

/** Groups `(owner, key, value)` rows into one label map per owner. */
export function groupLabels<R extends { key: string; value: string }>(
  rows: readonly R[],
  ownerOf: (row: R) => string,
): Map<string, Labels> {
  const out = new Map<string, Labels>();
  for (const row of rows) {
    const owner = ownerOf(row);
    const labels = out.get(owner) ?? {};
    labels[row.key] = row.value;
    out.set(owner, labels);
  }
  return out;
}
