/**
 * Runs a conformance suite's registration with some cases marked as known differences:
 * those are registered with `it.failing`, so they pass while the daemon still differs
 * and turn red the day it conforms (then the entry is removed). Each entry names the
 * case's title (the template title for `it.each`) and is explained where it is used.
 */
export function withKnownDifferences(known: readonly string[], register: () => void): void {
  const realIt = globalThis.it;
  const used = new Set<string>();
  const isKnown = (title: string): boolean => {
    if (!known.includes(title)) return false;
    used.add(title);
    return true;
  };
  const wrapped = Object.assign(
    (title: string, fn?: jest.ProvidesCallback, timeout?: number) =>
      isKnown(title) ? realIt.failing(title, fn as () => Promise<void>, timeout) : realIt(title, fn, timeout),
    realIt,
    {
      each: (table: readonly unknown[]) => (title: string, fn: (...args: any[]) => any, timeout?: number) =>
        isKnown(title)
          ? realIt.failing.each(table as any[])(title, fn, timeout)
          : realIt.each(table as any[])(title, fn, timeout),
    },
  );
  globalThis.it = wrapped as unknown as jest.It;
  try {
    register();
  } finally {
    globalThis.it = realIt;
  }
  const unused = known.filter((k) => !used.has(k));
  if (unused.length > 0) throw new Error(`known differences name no case of the suite: ${unused.join('; ')}`);
}
