// The CLI's control socket: a unix stream socket speaking JSON lines (proto/src/control.ts). One request
// per connection; the handler streams progress/log lines and ends with one result or error line.
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../../../common/src/index.ts';
import { CONTROL_REQUEST_SCHEMAS, CONTROL_VERBS, PROTO_VERSION, PhosError, check, parseControlLine, toPhosError, type ControlEvent, type ControlRequest, type ControlVerb } from '../../../proto/src/index.ts';

/** Longest request line accepted (a run request carries the caller's environment). */
const MAX_REQUEST_BYTES = 1 << 20;

/** What a handler may send before its result: lines without v/id (the server adds them). */
export type ControlSend = (e: DistributiveOmit<ControlEvent, 'v' | 'id'>) => void;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export type ControlHandler = (req: ControlRequest, send: ControlSend, signal: AbortSignal) => Promise<unknown>;

export class ControlServer {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly path: string, private readonly handler: ControlHandler, private readonly log: Logger) {}

  async start(): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true });
    if (existsSync(this.path)) unlinkSync(this.path);
    const server = createServer((sock) => this.onConnection(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => { server.off('error', reject); resolve(); });
    });
    chmodSync(this.path, 0o600);
    this.server = server;
    this.log.info({ path: this.path }, 'control socket listening');
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const srv = this.server;
    this.server = null;
    if (srv) await new Promise<void>((r) => srv.close(() => r()));
  }

  private onConnection(sock: Socket): void {
    this.sockets.add(sock);
    const ac = new AbortController();
    let buf = '';
    let started = false;
    sock.setEncoding('utf8');
    sock.on('close', () => { this.sockets.delete(sock); ac.abort(); });
    sock.on('error', () => ac.abort());
    sock.on('data', (d: string) => {
      if (started) return;
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) {
        if (buf.length > MAX_REQUEST_BYTES) this.finish(sock, 0, new PhosError('BAD_FRAME', 'control request longer than 1 MiB'));
        return;
      }
      started = true;
      void this.serve(sock, buf.slice(0, nl), ac.signal);
    });
  }

  private write(sock: Socket, line: object): void {
    if (!sock.destroyed && sock.writable) sock.write(JSON.stringify(line) + '\n');
  }

  private finish(sock: Socket, id: number, result: PhosError | { body: unknown }): void {
    if (result instanceof PhosError) this.write(sock, { v: PROTO_VERSION, id, t: 'error', err: result.toWire() });
    else this.write(sock, { v: PROTO_VERSION, id, t: 'result', body: result.body });
    sock.end();
  }

  private async serve(sock: Socket, line: string, signal: AbortSignal): Promise<void> {
    const raw = parseControlLine(line) as { v?: unknown; id?: unknown; verb?: unknown } | null;
    const id = typeof raw?.id === 'number' ? raw.id : 0;
    try {
      if (raw === null || typeof raw !== 'object') throw new PhosError('BAD_FRAME', 'control request is not a JSON object');
      if (raw.v !== PROTO_VERSION) throw new PhosError('PROTO_VERSION', `control request speaks v${String(raw.v)}, the agent v${PROTO_VERSION}`);
      if (!CONTROL_VERBS.includes(raw.verb as ControlVerb)) throw new PhosError('BAD_FRAME', `unknown control verb ${JSON.stringify(raw.verb)}`);
      const problem = check(CONTROL_REQUEST_SCHEMAS[raw.verb as ControlVerb], raw);
      if (problem) throw new PhosError('BAD_ARGS', `control request '${String(raw.verb)}': ${problem}`);
      const req = raw as ControlRequest;
      this.log.info({ verb: req.verb, id }, 'control request');
      const body = await this.handler(req, (e) => this.write(sock, { v: PROTO_VERSION, id, ...e }), signal);
      this.finish(sock, id, { body });
    } catch (err) {
      const e = toPhosError(err);
      this.log.warn({ id, err: e }, 'control request failed');
      this.finish(sock, id, e);
    }
  }
}
