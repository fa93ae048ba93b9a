// hpack.js ships no types: the part of its API used here.
declare module 'hpack.js' {
  import type { Duplex } from 'node:stream';

  interface Decompressor extends Duplex {
    execute(): void;
    read(): { name: string; value: string; neverIndex: boolean } | null;
    updateTableSize(size: number): void;
  }
  const hpack: {
    decompressor: { create(opts: { table: { size: number } }): Decompressor };
    compressor: { create(opts: { table: { size: number } }): Duplex };
  };
  export default hpack;
}
