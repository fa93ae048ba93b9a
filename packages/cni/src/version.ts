/** Compares two CNI spec versions ("0.3.1", "1.0.0"); a missing version counts as 0.1.0, as libcni. */
export function compareVersions(a: string, b: string): number {
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i]! - pb[i]!;
  return 0;
}

export const isValidVersion = (v: string): boolean => /^\d+\.\d+\.\d+$/.test(v);

function parts(v: string): number[] {
  const s = v === '' ? '0.1.0' : v;
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(s);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
}
