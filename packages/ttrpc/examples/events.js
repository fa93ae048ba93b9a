// A ttrpc server and client in one process: the Events/Forward call a shim makes to
// the daemon, and a Task/State call answered with a typed error.
// Run from the repo root: pnpm exec tsc -b packages/ttrpc && node packages/ttrpc/examples/events.js
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { NotFoundError, encodeAny } = require('@berth/api');
const { TtrpcClient, TtrpcServer } = require('..');

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ttrpc-example-'));
  const address = `unix://${dir}/berth.sock.ttrpc`;

  const server = new TtrpcServer();
  // Types come from @berth/api's protos by the service's full name.
  server.register('containerd.services.events.ttrpc.v1.Events', {
    Forward: async ({ envelope }, ctx) => {
      console.log(`event ${envelope.topic} in namespace ${ctx.namespace}`);
      return {}; // google.protobuf.Empty
    },
  });
  server.register('containerd.task.v2.Task', {
    State: async ({ id }) => {
      throw new NotFoundError(`task ${id}: not found`);
    },
  });
  await server.listen(address); // socket file mode 0600

  const client = await TtrpcClient.connect(address, { onClose: () => console.log('connection closed') });
  const events = client.service('containerd.services.events.ttrpc.v1.Events');
  await events.forward(
    {
      envelope: {
        timestamp: { seconds: Math.floor(Date.now() / 1000), nanos: 0 },
        namespace: 'default',
        topic: '/tasks/exit',
        event: encodeAny('containerd.events.TaskExit', { containerId: 'c1', exitStatus: 3 }),
      },
    },
    { namespace: 'default', timeoutMs: 5000 },
  );
  try {
    await client.call('containerd.task.v2.Task', 'State', { id: 'c1' }, { namespace: 'default' });
  } catch (err) {
    console.log(`${err.code}: ${err.message}`); // ERR_NOT_FOUND: task c1: not found
  }

  await client.close();
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
