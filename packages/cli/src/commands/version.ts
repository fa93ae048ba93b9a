import * as fs from 'node:fs';
import * as path from 'node:path';
import type { CommandSpec } from '../args';
import { type Globals, print, printJson } from '../runtime';

/** The CLI's own version, from its package.json (same place from src/ and dist/). */
export function cliVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8'));
    return String(pkg.version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

export const versionCommand: CommandSpec<Globals> = {
  name: 'version',
  summary: 'print the client and server versions',
  maxArgs: 0,
  async run({ global: g }) {
    const client = { version: cliVersion(), revision: '', node: process.version };
    if (g.format === 'table') {
      print(
        g,
        `Client:\n  Version:  ${client.version}\n  Revision: ${client.revision}\n  Node version: ${client.node}\n\n`,
      );
    }
    const { client: c, ctx } = g.session();
    const v = await c.version(ctx);
    const s = await c.server(ctx);
    if (g.format === 'json') {
      printJson(g, { client, server: { version: v.version, revision: v.revision, uuid: s.uuid } });
      return;
    }
    print(g, `Server:\n  Version:  ${v.version}\n  Revision: ${v.revision}\n  UUID: ${s.uuid}\n`);
  },
};
