// The CLI's one edge to the coordinator: a NATS connection, requests encoded with proto's codec and
// answered in its reply envelope, and the migration event stream. NATS failures become PhosError.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { PhosError, decodeMessage, decodeReply, encodeMessage, subjects, type Message, type MessageType } from '../../proto/src/index.ts';

export const NATS_HELP = '  --nats URL      the NATS server (default $NATS_URL, else nats://127.0.0.1:4222)';

export class CoordClient {
  private constructor(private readonly nc: NatsConnection) {}

  static async open(url: string | undefined): Promise<CoordClient> {
    const servers = url ?? process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
    try {
      return new CoordClient(await connect({ servers, name: 'phos-cli', maxReconnectAttempts: 3 }));
    } catch (err) {
      throw new PhosError('NATS_UNAVAILABLE', `cannot reach NATS at ${servers}: ${(err as Error).message}`, { cause: err });
    }
  }

  async request<T extends MessageType>(verb: string, type: T, body: Message<T>, timeoutMs = 10_000): Promise<unknown> {
    let data: Uint8Array;
    try {
      data = (await this.nc.request(subjects.coord(verb), encodeMessage(type, body), { timeout: timeoutMs })).data;
    } catch (err) {
      const msg = (err as Error).message;
      if (/no responders/i.test(msg)) throw new PhosError('AGENT_UNAVAILABLE', `no coordinator answers on ${subjects.coord(verb)}`, { remedy: 'start one with phos up (or services/coordinator), or check --nats' });
      if (/timeout/i.test(msg)) throw new PhosError('TIMEOUT', `the coordinator did not answer ${verb} within ${timeoutMs} ms`);
      throw new PhosError('NATS_UNAVAILABLE', `${verb}: ${msg}`, { cause: err });
    }
    const r = decodeReply(data);
    if (!r.ok) throw PhosError.fromWire(r.err);
    return r.body;
  }

  /**
   * Migration state events: of one migration, or of all ('*'). The subscription is live when the
   * promise resolves, so a caller can subscribe before it makes the request whose events it wants.
   */
  async events(id: string, until: (s: Message<'migration-state'>) => boolean = () => false): Promise<AsyncGenerator<Message<'migration-state'>>> {
    const sub = this.nc.subscribe(subjects.migrationEvents(id));
    await this.nc.flush();
    return (async function* () {
      for await (const m of sub) {
        let s: Message<'migration-state'>;
        try { s = decodeMessage('migration-state', m.data); } catch { continue; }
        yield s;
        if (until(s)) break;
      }
      sub.unsubscribe();
    })();
  }

  async close(): Promise<void> {
    await this.nc.close();
  }
}

/** "5GB/s", "500MB/s", "1.5GiB/s", plain bytes/s. */
export function parseRate(cmd: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B)?(?:\/s)?$/i.exec(v.trim());
  if (!m) throw new PhosError('BAD_ARGS', `phos ${cmd}: cannot read rate '${v}' (try 5GB/s or 500MiB/s)`, { remedy: `phos ${cmd} --help` });
  const unit = (m[2] ?? 'B').toUpperCase();
  const mult: Record<string, number> = { B: 1, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KIB: 2 ** 10, MIB: 2 ** 20, GIB: 2 ** 30, TIB: 2 ** 40 };
  return Math.round(Number(m[1]) * mult[unit]!);
}

/** "1s", "500ms", "10m", "1h" -> milliseconds. */
export function parseDuration(cmd: string, v: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v.trim());
  if (!m) throw new PhosError('BAD_ARGS', `phos ${cmd}: cannot read duration '${v}' (try 1s, 500ms, 10m)`, { remedy: `phos ${cmd} --help` });
  const mult: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  return Math.round(Number(m[1]) * mult[m[2]!]!);
}
