import { isAlreadyExists, isInvalidArgument, isNotFound } from '@berth/api';
import { containerName, NameIndex, RecordIndex, sandboxName } from '@berth/cri';

describe('RecordIndex', () => {
  const idx = new RecordIndex<{ id: string }>('sandbox');
  idx.add({ id: 'abcdef01' });
  idx.add({ id: 'abcdff02' });

  it('finds a record by its id or a unique prefix', () => {
    expect(idx.get('abcdef01').id).toBe('abcdef01');
    expect(idx.get('abcdf').id).toBe('abcdff02');
  });

  it('says NotFound naming the id, and InvalidArgument for an ambiguous prefix', () => {
    expect(() => idx.get('ffff')).toThrow('sandbox "ffff" not found');
    try {
      idx.get('ffff');
    } catch (e) {
      expect(isNotFound(e)).toBe(true);
    }
    expect(() => idx.get('abcd')).toThrow(/ambiguous/);
    try {
      idx.get('abcd');
    } catch (e) {
      expect(isInvalidArgument(e)).toBe(true);
    }
  });
});

describe('NameIndex', () => {
  it('refuses a name held by another id with AlreadyExists naming the holder', () => {
    const names = new NameIndex();
    names.reserve('k8s_POD_a_default_u_0', 'id1');
    names.reserve('k8s_POD_a_default_u_0', 'id1');
    let err: unknown;
    try {
      names.reserve('k8s_POD_a_default_u_0', 'id2');
    } catch (e) {
      err = e;
    }
    expect(isAlreadyExists(err)).toBe(true);
    expect((err as Error).message).toBe('name "k8s_POD_a_default_u_0" is reserved for "id1"');
    names.release('k8s_POD_a_default_u_0');
    names.reserve('k8s_POD_a_default_u_0', 'id2');
  });

  it('spells names as containerd does', () => {
    const pod = { name: 'web', namespace: 'default', uid: 'u1', attempt: 2 };
    expect(sandboxName(pod)).toBe('web_default_u1_2'); // containerd 1.6.20's, seen in its AlreadyExists message
    expect(containerName({ name: 'nginx', attempt: 1 }, pod)).toBe('nginx_web_default_u1_1'); // makeContainerName's
  });
});
