import { grpcTarget } from '@berth/client';

describe('grpcTarget', () => {
  it.each([
    ['/run/berth/berth.sock', 'unix:///run/berth/berth.sock'],
    ['unix:///run/berth/berth.sock', 'unix:///run/berth/berth.sock'],
    ['unix:/run/x.sock', 'unix:///run/x.sock'],
    ['/run/a/../b.sock', 'unix:///run/b.sock'],
  ])('%s -> %s', (address, target) => {
    expect(grpcTarget(address)).toBe(target);
  });

  it('resolves a relative path from the working directory', () => {
    expect(grpcTarget('x.sock')).toBe(`unix://${process.cwd()}/x.sock`);
  });

  it.each(['', '  ', 'unix://'])('refuses empty address %j as InvalidArgument', (address) => {
    expect(() => grpcTarget(address)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
  });

  it('refuses non-unix schemes, naming the address', () => {
    expect(() => grpcTarget('tcp://127.0.0.1:1234')).toThrow(/tcp:\/\/127\.0\.0\.1:1234.*only unix sockets/);
  });
});
