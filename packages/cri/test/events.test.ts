import type { wire } from '@berth/api';
import { type ContainerEventBuilder, ContainerEvents, type ContainerEventType } from '../src/events';

function recordingLog() {
  const warnings: string[] = [];
  const log = {
    with: () => log,
    debug: () => {},
    info: () => {},
    warn: (m: string) => warnings.push(m),
    error: () => {},
  };
  return { log, warnings };
}

const build: ContainerEventBuilder = async (containerId, sandboxId, type, createdAt) => ({
  containerId,
  containerEventType: type,
  createdAt,
  podSandboxStatus: { id: sandboxId } as wire.cri.PodSandboxStatus,
  containersStatuses: [],
});

async function take(it: AsyncIterator<wire.cri.ContainerEventResponse>, n: number) {
  const out: [string, ContainerEventType][] = [];
  for (let i = 0; i < n; i++) {
    const r = await it.next();
    if (r.done) break;
    out.push([r.value.containerId, r.value.containerEventType]);
  }
  return out;
}

describe('ContainerEvents', () => {
  test('every subscriber gets every event, in order, with the pod it belongs to', async () => {
    const { log } = recordingLog();
    const events = new ContainerEvents(build, log);
    const a = events.subscribe();
    const b = events.subscribe();
    events.emit('pod', 'pod', 'CONTAINER_CREATED_EVENT');
    events.emit('pod', 'pod', 'CONTAINER_STARTED_EVENT');
    events.emit('c1', 'pod', 'CONTAINER_CREATED_EVENT');
    events.emit('c1', 'pod', 'CONTAINER_STOPPED_EVENT');
    const want = [
      ['pod', 'CONTAINER_CREATED_EVENT'],
      ['pod', 'CONTAINER_STARTED_EVENT'],
      ['c1', 'CONTAINER_CREATED_EVENT'],
      ['c1', 'CONTAINER_STOPPED_EVENT'],
    ];
    expect(await take(a, 4)).toEqual(want);
    expect(await take(b, 4)).toEqual(want);
    const first = await (async () => {
      events.emit('c1', 'pod', 'CONTAINER_DELETED_EVENT');
      return (await a.next()).value as wire.cri.ContainerEventResponse;
    })();
    expect(first.podSandboxStatus?.id).toBe('pod');
    expect(first.createdAt).toBeGreaterThan(0);
  });

  test('events built out of order of their build times still arrive in the order they happened', async () => {
    const { log } = recordingLog();
    // the first event takes longer to build than the second
    const slowFirst: ContainerEventBuilder = async (id, sid, type, at) => {
      if (id === 'first') await new Promise((r) => setTimeout(r, 30));
      return build(id, sid, type, at);
    };
    const events = new ContainerEvents(slowFirst, log);
    const it = events.subscribe();
    events.emit('first', 'p', 'CONTAINER_STOPPED_EVENT');
    events.emit('second', 'p', 'CONTAINER_DELETED_EVENT');
    expect((await take(it, 2)).map(([id]) => id)).toEqual(['first', 'second']);
  });

  test('a subscriber that goes away is forgotten (abort or return), and close ends the rest', async () => {
    const { log } = recordingLog();
    const events = new ContainerEvents(build, log);
    const ac = new AbortController();
    const gone = events.subscribe(ac.signal);
    const left = events.subscribe();
    const stays = events.subscribe();
    expect(events.stats().subscribers).toBe(3);
    const pending = gone.next();
    ac.abort();
    expect((await pending).done).toBe(true);
    await left.return!();
    expect(events.stats().subscribers).toBe(1);
    events.emit('c', 'p', 'CONTAINER_STARTED_EVENT');
    await events.flushed();
    expect(events.stats().waiting).toEqual([1]);
    const ended = (async () => {
      const seen: string[] = [];
      for await (const ev of stays) seen.push(ev.containerEventType);
      return seen;
    })();
    await events.flushed();
    events.close();
    // the reader ends when the daemon closes, after what it had
    expect(await ended).toEqual(['CONTAINER_STARTED_EVENT']);
    expect(events.stats().subscribers).toBe(0);
    // a subscription made with an aborted signal ends at once
    const late = events.subscribe(AbortSignal.abort());
    expect((await late.next()).done).toBe(true);
  });

  test('nothing is built while nobody listens', async () => {
    const { log } = recordingLog();
    const calls: string[] = [];
    const events = new ContainerEvents(async (id, sid, type, at) => {
      calls.push(id);
      return build(id, sid, type, at);
    }, log);
    events.emit('c', 'p', 'CONTAINER_CREATED_EVENT');
    await events.flushed();
    expect(calls).toEqual([]);
    const it = events.subscribe();
    events.emit('d', 'p', 'CONTAINER_CREATED_EVENT');
    expect(await take(it, 1)).toEqual([['d', 'CONTAINER_CREATED_EVENT']]);
    expect(calls).toEqual(['d']);
  });

  test('a slow subscriber loses events past its buffer, with one warning, and does not hold up the others', async () => {
    const { log, warnings } = recordingLog();
    const events = new ContainerEvents(build, log, 3);
    const slow = events.subscribe();
    const fast = events.subscribe();
    const fastSeen: string[] = [];
    const reading = (async () => {
      for await (const ev of fast) {
        fastSeen.push(ev.containerId);
        if (fastSeen.length === 5) return;
      }
    })();
    for (let i = 0; i < 5; i++) events.emit(`c${i}`, 'p', 'CONTAINER_STARTED_EVENT');
    await events.flushed();
    await reading;
    expect(fastSeen).toEqual(['c0', 'c1', 'c2', 'c3', 'c4']);
    expect(events.stats().waiting).toEqual([3]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/not keeping up \(3 events waiting\).*c3/);
    expect((await take(slow, 3)).map(([id]) => id)).toEqual(['c0', 'c1', 'c2']);
    // once it has room again it gets new events, and the loss is counted
    events.emit('c5', 'p', 'CONTAINER_STARTED_EVENT');
    expect(await take(slow, 1)).toEqual([['c5', 'CONTAINER_STARTED_EVENT']]);
    expect(warnings[1]).toMatch(/lost 2 events/);
  });

  test('an event that cannot be built is a warning, and the next ones still come', async () => {
    const { log, warnings } = recordingLog();
    const events = new ContainerEvents(async (id, sid, type, at) => {
      if (id === 'bad') throw new Error('boom');
      return build(id, sid, type, at);
    }, log);
    const it = events.subscribe();
    events.emit('bad', 'p', 'CONTAINER_CREATED_EVENT');
    events.emit('good', 'p', 'CONTAINER_CREATED_EVENT');
    expect(await take(it, 1)).toEqual([['good', 'CONTAINER_CREATED_EVENT']]);
    expect(warnings).toEqual(['container event CONTAINER_CREATED_EVENT of bad: boom']);
  });
});
