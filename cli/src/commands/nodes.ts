// `phos nodes`: the nodes the coordinator knows, alive or down, with their GPUs.
import { parseArgs } from 'node:util';
import { PROTO_VERSION, PhosError, type Message } from '../../../proto/src/index.ts';
import { CoordClient, NATS_HELP } from '../coord-client.ts';
import { formatBytes, renderTable } from '../output.ts';

export const NODES_HELP = `usage: phos nodes [--json] [--nats URL]

Lists the nodes registered with the coordinator: name, alive or down (missed heartbeats), GPUs and
their free memory, and when the node was last heard from.
${NATS_HELP}
  --json          the node records as one JSON array
`;

export async function nodes(argv: string[]): Promise<number> {
  let values: { json?: boolean; nats?: string };
  try { values = parseArgs({ args: argv, options: { json: { type: 'boolean' }, nats: { type: 'string' } }, strict: true }).values; } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: 'phos nodes --help' });
  }
  const c = await CoordClient.open(values.nats);
  try {
    const list = (await c.request('nodes', 'list-request', { v: PROTO_VERSION })) as Message<'node-record'>[];
    if (values.json) { process.stdout.write(JSON.stringify(list) + '\n'); return 0; }
    const rows = list.map((n) => [
      n.node, n.alive ? 'alive' : 'DOWN', n.gpus.map((g) => `${g.index}:${g.model} ${formatBytes(g.freeBytes)} free`).join(', ') || '-',
      `${((Date.now() - n.lastSeen) / 1000).toFixed(1)}s ago`, n.simulated ? 'simulated' : `driver ${n.driverVersion}`,
    ]);
    process.stdout.write(rows.length ? renderTable(['NODE', 'STATE', 'GPUS', 'LAST SEEN', 'DRIVER'], rows) : 'no nodes registered\n');
    return 0;
  } finally {
    await c.close();
  }
}
