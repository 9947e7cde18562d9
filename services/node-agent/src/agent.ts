// The node agent: wires the libphos socket, the keeper, the process registry and the control socket,
// and answers the CLI's verbs. Standalone (no NATS) for everything local to one node.
import { criuVersion, primeCriuCache } from './criu.ts';
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import type { Logger } from '../../../common/src/index.ts';
import { PROTO_VERSION, PhosError, type ControlRequest, type ProcessInfo } from '../../../proto/src/index.ts';
import type { CompiledAgentOptions } from './agent-options.ts';
import { checkpointProcess, type Reporter } from './checkpoint.ts';
import { ControlServer, type ControlSend } from './control-server.ts';
import { Keeper } from './keeper.ts';
import { LibphosLink } from './libphos-link.ts';
import { ProcessRegistry, type ProcessRecord } from './process-registry.ts';
import type { Filler } from './fill.ts';
import { restoreImage } from './restore.ts';
import { moveToGpu } from './move-gpu.ts';
import { MeshMember } from './mesh.ts';
import { MigrationsIn, advertisedAddr } from './migrate-in.ts';
import { MigrationsOut } from './migrate-out.ts';

/** Bytes of log text per `log` line. */
const LOG_SLICE = 64 << 10;
const LOG_POLL_MS = 100;

export class Agent {
  readonly keeper: Keeper;
  readonly registry: ProcessRegistry;
  readonly link: LibphosLink;
  private readonly control: ControlServer;
  private readonly busy = new Set<number>();
  /** Background fills of restored processes (kept after they end, for ps). */
  private readonly fills = new Map<number, Filler>();
  private mesh: MeshMember | null = null;
  private readonly out: MigrationsOut;
  private readonly incoming: MigrationsIn;

  constructor(readonly o: CompiledAgentOptions, private readonly log: Logger) {
    // pccl dlopens the driver on first use; PHOS_LIBCUDA names a specific one (cudasim in CI).
    if (o.libcuda) process.env.PHOS_LIBCUDA = o.libcuda;
    this.keeper = new Keeper(log.child({ component: 'keeper' }), o.libcuda);
    // The GPU list costs a driver init in a child process (~0.25 s on an H200): pay it now, not inside the
    // first restore's downtime (a migration target's restore waited for it).
    void this.keeper.agentGpus();
    criuVersion({ bin: o.criu ?? undefined }).catch(() => undefined); // checked again (and reported) when used
    void primeCriuCache({ bin: o.criu ?? undefined }).then((made) => { if (made) log.info('criu kernel-probe cache written'); }, () => undefined);
    this.registry = new ProcessRegistry(o, log.child({ component: 'registry' }));
    this.registry.becomeReaper();
    this.registry.onEnded = (pid) => {
      const r = this.registry.find(String(pid));
      this.fills.get(pid)?.stop();
      if (r.machine.state !== 'dumping' && r.machine.state !== 'dumped') void this.keeper.releaseAll(pid);
    };
    this.link = new LibphosLink(o.socket, this.keeper, {
      isManaged: (pid) => this.registry.isManaged(pid),
      onHello: () => {},
      onClosed: () => {},
      onEvent: (pid, e) => { this.fills.get(pid)?.onEvent(e); this.incoming.onEvent(pid, e); },
    }, log.child({ component: 'libphos-link' }));
    const deps = { o, registry: this.registry, keeper: this.keeper, link: this.link, log };
    this.out = new MigrationsOut({ ...deps, busy: this.busy, mesh: () => this.mesh! }, log.child({ component: 'migrate-out' }));
    this.incoming = new MigrationsIn({ ...deps, mesh: () => this.mesh!, onFill: (pid, f) => this.fills.set(pid, f) }, o.dataAddr, log.child({ component: 'migrate-in' }));
    this.control = new ControlServer(o.controlSocket, (req, send, signal) => this.handle(req, send, signal), log.child({ component: 'control' }));
  }

  async start(): Promise<void> {
    this.link.start();
    await this.control.start();
    if (this.o.nats) {
      const running = () => this.registry.list(false).filter((r) => !r.machine.terminal)
        .map((r) => ({ pid: r.pid, job: r.job, keptBytes: this.keeper.bytes(r.pid), devices: 1 + Math.max(0, ...this.keeper.allocations(r.pid).map((a) => a.device ?? 0)) }));
      const join = { nats: this.o.nats, node: this.o.node, libcuda: this.o.libcuda, agentVersion: '0.1.0', dataAddr: advertisedAddr(this.o.dataAddr) };
      this.mesh = await MeshMember.join(join, running, this.log.child({ component: 'mesh' }), (m) => this.serveMigrations(m));
    }
    this.log.info({ node: this.o.node, socket: this.o.socket, control: this.o.controlSocket, stateDir: this.o.stateDir, pids: `${this.o.pidMin}-${this.o.pidMax}` }, 'agent ready');
  }

  /** Publishes the process list to the mesh now (not at the next heartbeat): a migrate may follow at once. */
  private publish(): void {
    this.mesh?.beat().catch((err: unknown) => this.log.debug({ err }, 'process publish failed'));
  }

  /** The migration verbs other agents and the coordinator ask this node (proto/src/messages.ts). */
  private serveMigrations(m: MeshMember): void {
    m.serve('prepare-target', 'prepare-target', async (r) => this.incoming.prepare(r));
    m.serve('migrate-allocs', 'migrate-allocs', (r) => this.incoming.allocs(r));
    m.serve('migrate-files', 'migrate-files', async (r) => this.incoming.files(r));
    m.serve('restore-migrated', 'restore-migrated', async (r) => { const res = await this.incoming.restore(r); this.publish(); return res; });
    m.serve('pre-copy', 'precopy-request', (r) => { this.checkFilled(r.pid); return this.out.precopy(r); });
    m.serve('cutover', 'migration-ref', (r) => this.out.cutover(r.id));
    m.serve('postcopy-send', 'migration-ref', (r) => this.out.postcopySend(r.id));
    m.serve('postcopy-wait', 'migration-ref', (r) => this.incoming.postcopyWait(r.id));
    m.serve('migration-end', 'migration-end', async (r) => {
      const [o, i] = await Promise.all([this.out.end(r.id, r.outcome), this.incoming.end(r.id, r.outcome)]);
      this.publish();
      return { v: PROTO_VERSION, source: o, target: i };
    });
  }

  async stop(): Promise<void> {
    await this.mesh?.leave();
    await this.control.stop();
    this.link.stop();
    this.registry.stop();
  }

  private info(r: ProcessRecord): ProcessInfo {
    const base = this.registry.info(r, this.link.linked(r.pid), this.keeper.allocations(r.pid).length, this.keeper.bytes(r.pid));
    const gpus = this.link.lastGpus(r.pid);
    const byGpu: number[] = [];
    for (const a of this.keeper.allocations(r.pid)) byGpu[a.gpu ?? 0] = (byGpu[a.gpu ?? 0] ?? 0) + a.size;
    const info = { ...base, ...(gpus ? { gpus } : {}), ...(byGpu.length ? { keptBytesByGpu: Array.from(byGpu, (b) => b ?? 0) } : {}) };
    const f = this.fills.get(r.pid);
    return f && r.restoredFrom !== null ? { ...info, fill: f.snapshot() } : info;
  }

  /** A checkpoint needs every byte in the keeper: refused while a restore's fill runs or after it failed. */
  private checkFilled(pid: number): void {
    const f = this.fills.get(pid)?.snapshot();
    if (!f || f.state === 'done' || f.state === 'stopped') return;
    throw new PhosError('ILLEGAL_STATE', f.state === 'filling'
      ? `pid ${pid} is still filling its device memory from ${this.registry.find(String(pid)).restoredFrom} (${f.chunksDone}/${f.chunksTotal} chunks)`
      : `pid ${pid}'s fill from its image failed (${f.errors.map((e) => e.path).join(', ')}): its device memory is incomplete`,
    { remedy: f.state === 'filling' ? 'retry once phos ps shows the fill done' : 'restore again from an intact image', details: { pid } });
  }

  private reporter(send: ControlSend): Reporter {
    const t0 = performance.now();
    return {
      phase: (phase, bytesDone = 0, bytesTotal = 0) => send({ t: 'progress', phase, bytesDone, bytesTotal, elapsedMs: performance.now() - t0 }),
      step: (r) => send({ t: 'step', name: r.name, ms: r.ms, outcome: r.outcome }),
    };
  }

  private async exclusive<T>(pid: number, fn: () => Promise<T>): Promise<T> {
    if (this.busy.has(pid)) throw new PhosError('ILLEGAL_STATE', `pid ${pid} is already being checkpointed`, { remedy: 'wait for the running operation to finish' });
    this.busy.add(pid);
    try { return await fn(); } finally { this.busy.delete(pid); }
  }

  private async handle(req: ControlRequest, send: ControlSend, signal: AbortSignal): Promise<unknown> {
    const deps = { o: this.o, registry: this.registry, keeper: this.keeper, link: this.link, log: this.log };
    switch (req.verb) {
      case 'ping':
        return { node: this.o.node, pid: process.pid, version: PROTO_VERSION };
      case 'run': {
        const env: Record<string, string> = { ...(req.env ?? (process.env as Record<string, string>)), ...this.o.env };
        if (req.preload !== false) {
          if (!existsSync(this.o.libphos)) throw new PhosError('NOT_FOUND', `libphos is not built (${this.o.libphos})`, { remedy: 'run: bash deploy/install.sh' });
          env.LD_PRELOAD = [this.o.libphos, env.LD_PRELOAD].filter(Boolean).join(':');
          env.PHOS_AGENT_SOCK = this.o.socket;
          env.PHOS_VA_BASE = `0x${this.o.vaBase.toString(16)}`;
          env.PHOS_VA_SIZE = String(this.o.vaSize);
        }
        const info = this.info(this.registry.start({ argv: req.argv, job: req.job, cwd: req.cwd, preload: req.preload }, env));
        this.publish();
        return info;
      }
      case 'ps':
        return { processes: this.registry.list(req.all ?? false).map((r) => this.info(r)) };
      case 'logs':
        await this.streamLog(this.registry.find(req.ref), req.follow ?? false, send, signal);
        return { ref: req.ref };
      case 'pre-dump':
      case 'dump':
        this.checkFilled(req.pid);
        return this.exclusive(req.pid, () => checkpointProcess(deps, { pid: req.pid, dir: req.dir, parent: req.parent ?? null, kind: req.verb }, this.reporter(send)));
      case 'move-gpu': {
        this.checkFilled(req.pid);
        const r = await this.exclusive(req.pid, () => moveToGpu({ ...deps, onFill: (pid, f) => this.fills.set(pid, f) }, req, this.reporter(send)));
        this.publish();
        return r;
      }
      case 'restore': {
        const r = await restoreImage({ ...deps, onFill: (pid, f) => this.fills.set(pid, f) }, req.dir, this.reporter(send), { gpuMap: req.gpuMap, verify: req.verify });
        const info = r.fill ? { ...r.info, fill: r.fill.snapshot() } : r.info;
        this.publish();
        return { ...info, ms: r.ms, releaseMs: r.ms };
      }
    }
  }

  private async streamLog(r: ProcessRecord, follow: boolean, send: ControlSend, signal: AbortSignal): Promise<void> {
    let offset = 0;
    const buf = Buffer.alloc(LOG_SLICE);
    for (;;) {
      let size = 0;
      try { size = statSync(r.logPath).size; } catch { /* not written yet */ }
      if (size > offset) {
        const fd = openSync(r.logPath, 'r');
        try {
          while (offset < size && !signal.aborted) {
            const n = readSync(fd, buf, 0, Math.min(LOG_SLICE, size - offset), offset);
            if (n <= 0) break;
            send({ t: 'log', data: buf.subarray(0, n).toString('utf8') });
            offset += n;
          }
        } finally { closeSync(fd); }
      }
      // The record may be replaced by a restored one under the same pid: follow that one too.
      const cur = this.registry.find(String(r.pid));
      const ended = cur.machine.state === 'exited' || cur.machine.state === 'failed';
      if (!follow || signal.aborted || (ended && size <= offset)) return;
      await new Promise((res) => setTimeout(res, LOG_POLL_MS));
    }
  }
}
