import { RwLock } from '../src';

const tick = () => new Promise((r) => setImmediate(r));

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('RwLock', () => {
  it('lets shared holders overlap', async () => {
    const lock = new RwLock();
    const gate = deferred();
    let inside = 0;
    let most = 0;
    const hold = () =>
      lock.shared(async () => {
        inside++;
        most = Math.max(most, inside);
        await gate.promise;
        inside--;
      });
    const all = Promise.all([hold(), hold(), hold()]);
    await tick();
    gate.resolve();
    await all;
    expect(most).toBe(3);
  });

  it('runs an exclusive holder alone, and queues later shared requests behind it', async () => {
    const lock = new RwLock();
    const order: string[] = [];
    const firstGate = deferred();
    const first = lock.shared(async () => {
      order.push('shared-1 start');
      await firstGate.promise;
      order.push('shared-1 end');
    });
    const excl = lock.exclusive(async () => {
      order.push('exclusive');
    });
    const second = lock.shared(async () => {
      order.push('shared-2');
    });
    await tick();
    expect(order).toEqual(['shared-1 start']);
    firstGate.resolve();
    await Promise.all([first, excl, second]);
    expect(order).toEqual(['shared-1 start', 'shared-1 end', 'exclusive', 'shared-2']);
  });

  it('releases the lock when the holder throws', async () => {
    const lock = new RwLock();
    await expect(lock.exclusive(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(lock.shared(() => 'fine')).resolves.toBe('fine');
    await expect(lock.exclusive(() => 'also fine')).resolves.toBe('also fine');
  });
});
