// `phos migrate --pid N --to HOST`: asks the coordinator to live-migrate a managed process and follows
// it to the end with a progress line; `phos migrate cancel ID` cancels one; `--to-gpu G` moves it to
// another GPU of this node through the local agent (no coordinator).
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { ERROR_CODES, MIGRATION_MODES, PROTO_VERSION, PhosError, isErrorCode, type Message, type MoveResult } from '../../../proto/src/index.ts';
import { callAgent, controlSocketPath } from '../agent-client.ts';
import { CoordClient, NATS_HELP, parseDuration, parseRate } from '../coord-client.ts';
import { progressView } from '../progress.ts';
import { formatBytes } from '../output.ts';

export const MIGRATE_HELP = `usage: phos migrate --pid N --to NODE [options]
       phos migrate --pid N --to-gpu G [--socket PATH] [--json]
       phos migrate cancel ID

Moves a running phos-managed process to another node while it keeps running: GPU memory is copied in
rounds while the source runs (each round re-sends only the chunks the app changed), then a short
cutover: the app is frozen, the last changed chunks and its CPU image go over, and the target runs it
from the received memory. Until the target runs it, any failure (cancel, timeout, a node or NATS gone)
leaves the app running on the source as if nothing happened.

  --pid N             the process (a phos-managed pid on the source node)
  --to NODE           target node (see phos nodes)
  --from NODE         source node (default: this host's name)
  --gpus G[,G...]     the target's GPU for each GPU the process uses, in its device order, e.g. 1 or 1,0
                      (default: the lowest-numbered GPUs of the same model with room)
  --bandwidth RATE    cap on the data rate, e.g. 5GB/s, 500MiB/s (default: no cap)
  --max-downtime D    cutover budget, e.g. 1s, 800ms (default 1.5s)
  --timeout D         give up and roll back after D, e.g. 10m (default 30m)
  --mode M            auto (default): pre-copy rounds, then cutover; if the rounds stop converging, what is
                      still dirty follows after the target runs the app (post-copy)
                      precopy: never post-copy (the cutover sends everything left, however long it takes)
                      postcopy: one bulk round, then the target runs the app at once and the rest follows;
                      the app waits on a chunk that has not arrived yet. Until the last one is in, the
                      source keeps its copy: a failure rolls the app back to it, as of the freeze
${NATS_HELP}
  --json              one JSON line per state change, then the final state

--to-gpu G moves the process to GPU G of this node (an ordinal as phos doctor lists them) through the
local agent's control socket (--socket, else $PHOS_CONTROL_SOCK): its device memory is copied device to
device onto G (peer copy) while it runs, then it is frozen and dumped keeping its memory, the chunks it
wrote since are copied again, and it is restored there. Its
device 0 goes to G; other GPUs it uses go to the GPUs left over. Prints the downtime (freeze to thaw).
--to and --to-gpu are exclusive.

Exit status: 0 succeeded; 3 no such node/process; 5 coordinator or agent unreachable; 6 timeout;
8 illegal state; 9 cancelled; other codes as the error says (phos --help).
`;

type State = Message<'migration-state'>;
/** `--gpus 1,0`: GPU ordinals of the target, one per device of the process. */
function parseGpus(v: string): number[] {
  const list = v.split(',').map((x) => x.trim());
  if (!list.length || list.some((x) => !/^\d+$/.test(x))) throw new PhosError('BAD_ARGS', `phos migrate: --gpus wants GPU ordinals separated by commas (e.g. 1 or 1,0), got '${v}'`, { remedy: 'phos nodes lists the GPUs of each node' });
  return list.map(Number);
}

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'rolled-back']);

function localNode(): string {
  return hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64);
}

function progressLine(s: State, startedAt: number, prev: State | null): string {
  const secs = Math.max((Date.now() - startedAt) / 1000, 0.001);
  const rate = s.bytesSent / secs;
  const eta = rate > 0 && s.bytesRemaining > 0 ? `${(s.bytesRemaining / rate).toFixed(0)}s` : '-';
  // Remaining grows when a pre-copy round ends and the next one re-sends what the app changed meanwhile.
  const why = prev && prev.phase === s.phase && s.bytesRemaining > prev.bytesRemaining ? '  (next round: re-sending chunks the app changed)' : '';
  return `${s.phase.padEnd(16)} sent ${formatBytes(s.bytesSent)} / ${formatBytes(s.bytesTotal)}  remaining ${formatBytes(s.bytesRemaining)}  ` +
    `${formatBytes(rate)}/s  dirty ${formatBytes(s.dirtyBytesPerSec)}/s  eta ${eta}${why}`;
}

async function cancel(c: CoordClient, id: string | undefined, json: boolean): Promise<number> {
  if (!id) throw new PhosError('BAD_ARGS', 'phos migrate cancel: name the migration id', { remedy: 'phos migrations' });
  const s = (await c.request('cancel', 'cancel-request', { v: PROTO_VERSION, id })) as State;
  process.stdout.write(json ? JSON.stringify(s) + '\n' : `migration ${id} ${s.phase}; the source keeps running\n`);
  return 0;
}

/** --to-gpu: the local agent moves the process to another GPU of this node. */
async function moveGpu(pid: number, to: string, socket: string | undefined, json: boolean): Promise<number> {
  if (!/^\d+$/.test(to)) throw new PhosError('BAD_ARGS', `phos migrate: --to-gpu must be a GPU ordinal, got '${to}'`, { remedy: 'phos doctor lists the GPUs' });
  const view = progressView({ json, tty: process.stderr.isTTY === true });
  try {
    const r = await callAgent(controlSocketPath(socket), 'move-gpu', { pid, toGpu: Number(to) }, (e) => view.onEvent(e)) as MoveResult;
    view.done();
    process.stdout.write(json ? JSON.stringify({ ok: true, result: r }) + '\n'
      : `pid ${r.pid} moved from GPU ${r.fromGpu} to GPU ${r.toGpu}: ${formatBytes(r.bytes)} copied device to device, ${formatBytes(r.bytesInDowntime)} of it while frozen (${r.copyMs.toFixed(0)} ms); downtime ${r.downtimeMs.toFixed(0)} ms, total ${r.totalMs.toFixed(0)} ms\n`);
    return 0;
  } finally { view.done(); }
}

export async function migrate(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: {
        pid: { type: 'string' }, to: { type: 'string' }, from: { type: 'string' }, bandwidth: { type: 'string' },
        'max-downtime': { type: 'string' }, timeout: { type: 'string' }, mode: { type: 'string' }, nats: { type: 'string' }, json: { type: 'boolean' },
        'to-gpu': { type: 'string' }, socket: { type: 'string' }, gpus: { type: 'string' },
      },
    });
  } catch (err) {
    throw new PhosError('BAD_ARGS', (err as Error).message, { remedy: 'phos migrate --help' });
  }
  const { values, positionals } = parsed;
  const json = values.json ?? false;
  if (positionals[0] === 'cancel') {
    const c = await CoordClient.open(values.nats);
    try { return await cancel(c, positionals[1], json); } finally { await c.close(); }
  }
  if (positionals.length) throw new PhosError('BAD_ARGS', `phos migrate: unexpected '${positionals.join(' ')}'`, { remedy: 'phos migrate --help' });
  if (!values.pid || !/^\d+$/.test(values.pid)) throw new PhosError('BAD_ARGS', 'phos migrate: --pid N is required', { remedy: 'phos migrate --help' });
  if (values['to-gpu'] !== undefined) {
    if (values.to !== undefined) throw new PhosError('BAD_ARGS', 'phos migrate: --to and --to-gpu are exclusive (another node, or another GPU of this one)', { remedy: 'phos migrate --help' });
    if (values.gpus !== undefined) throw new PhosError('BAD_ARGS', 'phos migrate: --gpus goes with --to (GPUs of another node); --to-gpu names the GPU itself', { remedy: 'phos migrate --help' });
    return moveGpu(Number(values.pid), values['to-gpu'], values.socket, json);
  }
  if (!values.to) throw new PhosError('BAD_ARGS', 'phos migrate: --to NODE is required', { remedy: 'phos nodes lists the nodes' });
  const mode = values.mode ?? 'auto';
  if (!(MIGRATION_MODES as readonly string[]).includes(mode)) throw new PhosError('BAD_ARGS', `phos migrate: --mode must be one of ${MIGRATION_MODES.join(', ')}`);
  const req: Message<'migrate-request'> = {
    v: PROTO_VERSION, pid: Number(values.pid), from: values.from ?? localNode(), to: values.to,
    bandwidthBytesPerSec: values.bandwidth ? parseRate('migrate', values.bandwidth) : null,
    maxDowntimeMs: values['max-downtime'] ? parseDuration('migrate', values['max-downtime']) : 1500,
    timeoutMs: values.timeout ? parseDuration('migrate', values.timeout) : 30 * 60_000,
    mode: mode as Message<'migrate-request'>['mode'],
    ...(values.gpus !== undefined ? { gpus: parseGpus(values.gpus) } : {}),
  };
  const c = await CoordClient.open(values.nats);
  try {
    const events = await c.events('*');
    const { id } = (await c.request('migrate', 'migrate-request', req)) as Message<'migrate-accepted'>;
    const tty = !json && process.stderr.isTTY;
    if (!json) process.stderr.write(`migration ${id}: pid ${req.pid} ${req.from} -> ${req.to}\n`);
    const startedAt = Date.now();
    let last: State | null = null;
    for await (const s of events) {
      if (s.id !== id) continue;
      const prev = last;
      last = s;
      if (json) process.stdout.write(JSON.stringify(s) + '\n');
      else if (tty) process.stderr.write(`\r\x1b[2K${progressLine(s, startedAt, prev)}`);
      else process.stderr.write(`${progressLine(s, startedAt, prev)}\n`);
      if (TERMINAL.has(s.phase)) break;
    }
    if (tty) process.stderr.write('\n');
    if (!last) throw new PhosError('INTERNAL', `migration ${id}: the event stream ended without a state`);
    if (last.phase === 'succeeded') {
      if (!json) process.stdout.write(`migration ${id} succeeded: pid ${req.pid} runs on ${req.to}; downtime ${last.downtimeMs?.toFixed(0) ?? '?'} ms${last.bytesInDowntime !== undefined ? ` (${formatBytes(last.bytesInDowntime)} of GPU memory sent while frozen)` : ''}\n`);
      return 0;
    }
    const code = last.error && isErrorCode(last.error.code) ? last.error.code : last.phase === 'cancelled' ? 'CANCELLED' : 'INTERNAL';
    if (!json) {
      process.stderr.write(`migration ${id} ${last.phase}; the source keeps running\n`);
      if (last.error) process.stderr.write(`error ${last.error.code}: ${last.error.message}\nremedy: ${last.error.remedy}\n`);
    }
    return ERROR_CODES[code].exit;
  } finally {
    await c.close();
  }
}
