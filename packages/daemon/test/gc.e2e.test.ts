/**
 * Garbage collection as the stock `ctr` sees it, on berthd and on Debian's containerd side
 * by side: containerd's gc.v1 scheduler collects on deletions, on enough writes or when
 * asked to, not after every change. So content `ctr content ingest` commits with no lease
 * and no gc.root survives until something is deleted, and a synchronous delete reclaims
 * it before it returns.
 */
import { digestOf } from '@berth/api';
import { containerdInstalled, ctr, type Daemon, startBerthd, startContainerd } from '@berth/testkit';

const describeIf = containerdInstalled() ? describe : describe.skip;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ok(address: string, args: string[], input?: string): Promise<string> {
  const r = await ctr(address, args, { input });
  if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

const listed = async (address: string): Promise<string[]> =>
  (await ok(address, ['content', 'ls', '-q'])).split('\n').filter(Boolean).sort();

describeIf('garbage collection scheduled as containerd, seen through stock ctr', () => {
  const daemons: Record<string, Daemon> = {};

  beforeAll(async () => {
    [daemons.berthd, daemons.containerd] = await Promise.all([startBerthd(), startContainerd()]);
  });
  afterAll(async () => {
    await Promise.all(Object.values(daemons).map((d) => d.dispose()));
  });

  test.each(['containerd', 'berthd'])(
    '%s: a blob ingested with no lease outlives a namespace create and rm, past the GC delays',
    async (name) => {
      const address = daemons[name]!.address;
      const kept: string[] = [];
      for (const round of [1, 2, 3]) {
        await ok(address, ['namespaces', 'create', `gc-x${round}`]);
        await ok(address, ['namespaces', 'rm', `gc-x${round}`]);
        const data = `data ${round}\n`;
        await ok(address, ['content', 'ingest', `r${round}`], data);
        kept.push(digestOf(Buffer.from(data)));
        // Past the start-up collection and many ticks of the scheduler.
        await sleep(1500);
        expect(await listed(address)).toEqual([...kept].sort());
      }
    },
  );

  test.each(['containerd', 'berthd'])(
    '%s: a synchronous lease delete reclaims that garbage before it returns',
    async (name) => {
      const address = daemons[name]!.address;
      const data = `unreferenced on ${name}\n`;
      await ok(address, ['content', 'ingest', 'sync-me'], data);
      expect(await listed(address)).toContain(digestOf(Buffer.from(data)));
      await ok(address, ['leases', 'create', '--id', 'gc-sync']);
      await ok(address, ['leases', 'rm', '--sync', 'gc-sync']);
      expect(await listed(address)).toEqual([]);
    },
  );

  test.each(['containerd', 'berthd'])(
    '%s: a content delete is a deletion: the next collection takes the other garbage too',
    async (name) => {
      const address = daemons[name]!.address;
      const [a, b] = [`first on ${name}\n`, `second on ${name}\n`];
      await ok(address, ['content', 'ingest', 'del-a'], a);
      await ok(address, ['content', 'ingest', 'del-b'], b);
      await sleep(500);
      expect(await listed(address)).toEqual([digestOf(Buffer.from(a)), digestOf(Buffer.from(b))].sort());
      await ok(address, ['content', 'rm', digestOf(Buffer.from(a))]);
      // Collected at the scheduler's next tick, in the background: wait for it.
      let left = await listed(address);
      for (let i = 0; i < 100 && left.length > 0; i++) {
        await sleep(100);
        left = await listed(address);
      }
      expect(left).toEqual([]);
    },
  );
});
