import { serveExecArgv } from '../src/start';

describe('serveExecArgv', () => {
  it('caps the young generation of the serving shim', () => {
    expect(serveExecArgv([])).toEqual(['--max-semi-space-size=1']);
    expect(serveExecArgv(['--enable-source-maps'])).toEqual([
      '--enable-source-maps',
      '--max-semi-space-size=1',
    ]);
  });

  it('keeps a semi-space size the shim was started with', () => {
    expect(serveExecArgv(['--max-semi-space-size=8'])).toEqual(['--max-semi-space-size=8']);
  });
});
