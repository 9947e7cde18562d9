// The CLI's side of the agent's control socket (JSON lines, proto/src/control.ts): one request per
// connection, an async iterator of the agent's progress/log/step lines, and the final result or error.
import { connect } from 'node:net';
import { PROTO_VERSION, PhosError, parseControlLine, type ControlEvent, type ControlRequest, type ControlVerb } from '../../proto/src/index.ts';

export const DEFAULT_CONTROL_SOCKET = '/run/phos/control.sock';

/** --socket, else PHOS_CONTROL_SOCK, else the default path. */
export function controlSocketPath(flag?: string): string {
  return flag ?? process.env.PHOS_CONTROL_SOCK ?? DEFAULT_CONTROL_SOCKET;
}

type Body<V extends ControlVerb> = Omit<Extract<ControlRequest, { verb: V }>, 'v' | 'id' | 'verb'>;
export type StreamEvent = Exclude<ControlEvent, { t: 'result' } | { t: 'error' }>;

/**
 * Sends one request and calls onEvent for every progress/step/log line; resolves with the result body,
 * rejects with the agent's PhosError (or AGENT_UNAVAILABLE when nothing answers).
 */
export function callAgent<V extends ControlVerb>(socket: string, verb: V, body: Body<V>, onEvent: (e: StreamEvent) => void = () => {}): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = connect(socket);
    let buf = '';
    let done = false;
    const fail = (e: PhosError) => { if (!done) { done = true; sock.destroy(); reject(e); } };
    sock.setEncoding('utf8');
    sock.once('connect', () => sock.write(JSON.stringify({ v: PROTO_VERSION, id: 1, verb, ...body }) + '\n'));
    sock.on('error', (err: NodeJS.ErrnoException) => fail(new PhosError('AGENT_UNAVAILABLE', `the node agent does not answer on ${socket} (${err.code ?? err.message})`, {
      remedy: `start it with: phos agent (or set PHOS_CONTROL_SOCK / --socket)`,
    })));
    sock.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const e = parseControlLine(line) as ControlEvent | null;
        if (!e || typeof e !== 'object') { fail(new PhosError('BAD_FRAME', `the agent sent a line that is not JSON: ${line.slice(0, 100)}`)); return; }
        if (e.t === 'result') { done = true; sock.end(); resolve(e.body); return; }
        if (e.t === 'error') { done = true; sock.end(); reject(PhosError.fromWire(e.err)); return; }
        onEvent(e);
      }
    });
    sock.on('close', () => fail(new PhosError('AGENT_UNAVAILABLE', `the node agent closed ${socket} without an answer`, { remedy: 'see the agent log' })));
  });
}
