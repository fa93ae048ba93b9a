import { existsSync } from 'node:fs';
import { oci } from '@berth/client';
import { run } from '@berth/testkit';

const CTR = '/usr/bin/ctr';
const describeCtr = existsSync(CTR) ? describe : describe.skip;

// `ctr oci spec` prints containerd's own default spec (oci.GenerateSpec for an empty container
// id in the --namespace given); it needs no daemon.
async function ctrDefaultSpec(namespace: string): Promise<unknown> {
  const r = await run(CTR, ['--namespace', namespace, 'oci', 'spec']);
  if (r.code !== 0) throw new Error(`ctr oci spec: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describeCtr('default spec against containerd 1.6 (ctr oci spec)', () => {
  it.each(['default', 'k8s.io', 'other-ns'])('is field for field the same in namespace %s', async (ns) => {
    const theirs = await ctrDefaultSpec(ns);
    const ours = JSON.parse(JSON.stringify(oci.defaultSpec(ns, '')));
    expect(ours).toEqual(theirs);
  });

  it('serialises to the same JSON text, key order included', async () => {
    const r = await run(CTR, ['oci', 'spec']);
    expect(JSON.stringify(oci.defaultSpec('default', ''), null, 4)).toBe(r.stdout.trimEnd());
  });
});
