/**
 * `defaults` with `overrides` applied by variable name: `K=v` replaces K's value in place or
 * appends it, a bare `K` removes K (containerd's replaceOrAppendEnvValues, so an image's
 * `PATH` keeps its position when `--env PATH=...` changes it).
 */
export function replaceOrAppendEnv(defaults: readonly string[], overrides: readonly string[]): string[] {
  const results = [...defaults];
  const index = new Map<string, number>();
  defaults.forEach((e, i) => {
    index.set(keyOf(e), i);
  });
  for (const value of overrides) {
    const at = index.get(keyOf(value));
    if (!value.includes('=')) {
      if (at !== undefined) results[at] = '';
      continue;
    }
    if (at !== undefined) results[at] = value;
    else results.push(value);
  }
  return results.filter((e) => e !== '');
}

function keyOf(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}
