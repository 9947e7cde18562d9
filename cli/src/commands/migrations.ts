// `phos migrations [--watch]`: migration records from the coordinator; --watch follows their events.
import { parseArgs } from 'node:util';
import { PROTO_VERSION, PhosError, type Message } from '../../../proto/src/index.ts';
import { CoordClient, NATS_HELP } from '../coord-client.ts';
import { formatBytes, renderTable } from '../output.ts';

export const MIGRATIONS_HELP = `usage: phos migrations [--watch] [--json] [--nats URL]

Lists migrations (id, pid, source -> target, phase, bytes sent, error). --watch then prints every state
change as it happens until interrupted.
${NATS_HELP}
  --watch         follow migration events
  --json          JSON (one array, then one line per event with --watch)
`;

type State = Message<'migration-state'>;

export function migrationRow(m: State): string[] {
  return [m.id, String(m.pid), `${m.from} -> ${m.to}`, m.phase, `${formatBytes(m.bytesSent)} / ${formatBytes(m.bytesTotal)}`,
    m.downtimeMs === null ? '-' : `${m.downtimeMs.toFixed(0)} ms`, m.error ? `${m.error.code}: ${m.error.message}` : ''];
}
export const MIGRATION_HEADERS = ['ID', 'PID', 'ROUTE', 'PHASE', 'SENT', 'DOWNTIME', 'ERROR'];

export async function migrations(argv: string[]): Promise<number> {
  let values: { json?: boolean; nats?: string; watch?: boolean };
  try { values = parseArgs({ args: argv, options: { json: { type: 'boolean' }, nats: { type: 'string' }, watch: { type: 'boolean' } }, strict: true }).values; } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: 'phos migrations --help' });
  }
  const c = await CoordClient.open(values.nats);
  try {
    const list = (await c.request('migrations', 'list-request', { v: PROTO_VERSION })) as State[];
    if (values.json) process.stdout.write(JSON.stringify(list) + '\n');
    else process.stdout.write(list.length ? renderTable(MIGRATION_HEADERS, list.map(migrationRow)) : 'no migrations\n');
    if (!values.watch) return 0;
    for await (const s of await c.events('*')) {
      process.stdout.write(values.json ? JSON.stringify(s) + '\n' : `${new Date(s.updatedAt).toISOString()}  ${migrationRow(s).join('  ')}\n`);
    }
    return 0;
  } finally {
    await c.close();
  }
}
