import { firstMetadataValue } from '../src/context';

describe('firstMetadataValue', () => {
  it('takes the first of repeated values, as containerd reads its headers', () => {
    // containerd's Go client re-namespacing a context sends both values, newest first;
    // Node's HTTP/2 joins them before JS sees the header.
    expect(firstMetadataValue('conf-sn-1, testsuite')).toBe('conf-sn-1');
    expect(firstMetadataValue(['conf-sn-1', 'testsuite'])).toBe('conf-sn-1');
    expect(firstMetadataValue([Buffer.from('ns-a'), 'ns-b'])).toBe('ns-a');
  });

  it('passes a single value through and says undefined when there is none', () => {
    expect(firstMetadataValue('default')).toBe('default');
    expect(firstMetadataValue([])).toBeUndefined();
    expect(firstMetadataValue(undefined)).toBeUndefined();
  });
});
