// The agent's end of libphos's SOCK_SEQPACKET socket: accepts connections (pccl), checks that a process
// registers only itself (SO_PEERCRED pid == hello pid) and is managed, decodes frames with proto's
// decodeFrame, feeds alloc/free to the keeper, and matches req/rep. A bad frame is logged and its
// connection closed; nothing a peer sends can crash the agent.
import { existsSync, renameSync } from 'node:fs';
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { OP_RESULTS, PROTO_VERSION, PhosError, check, decodeFrame, encodeFrame, toPhosError, type Frame, type Op } from '../../../proto/src/index.ts';
import type { Keeper } from './keeper.ts';

/** libphos tracks writes and gates access per chunk of 2 MiB of its VA region (index = (va - base) / this). */
export const LIBPHOS_CHUNK = 2 << 20;

/** The chunk indices a hash-round or freeze reply names as written since the last round; null: it cannot say. */
export function changedChunks(rep: Record<string, unknown> | null): Set<number> | null {
  return rep && Array.isArray(rep.changed) ? new Set(rep.changed as number[]) : null;
}

interface Pending { op: Op; resolve(v: Record<string, unknown>): void; reject(e: PhosError): void; timer: NodeJS.Timeout }

interface Conn {
  conn: number;
  pid: number;
  uid: number;
  hello: Frame<'hello'> | null;
  /** Frames are handled one after another (imports are async; a free must follow its alloc). */
  queue: Promise<void>;
  pending: Map<number, Pending>;
}

export interface LinkHooks {
  /** May this pid register? (managed processes only) */
  isManaged(pid: number): boolean;
  /** A process registered (hello, first or resumed). */
  onHello(pid: number, hello: Frame<'hello'>): void;
  /** A process's link closed. */
  onClosed(pid: number, reason: string): void;
  /** An unsolicited event from libphos (gate-wait drives the background fill's order). */
  onEvent?(pid: number, event: Frame<'event'>): void;
}

export class LibphosLink {
  private readonly conns = new Map<number, Conn>();
  private readonly byPid = new Map<number, Conn>();
  private nextId = 1;
  private helloWaiters: { pid: number; resolve(h: Frame<'hello'>): void }[] = [];
  private readonly refused = new Set<number>();
  /** The GPUs (ordinal -> UUID) each pid's latest hello named; kept after its link closes. */
  private readonly gpus = new Map<number, string[]>();
  private hidden = 0;

  constructor(private readonly path: string, private readonly keeper: Keeper, private readonly hooks: LinkHooks, private readonly log: Logger) {}

  start(): void {
    pccl.agentListen(this.path, (e) => {
      try {
        this.onEvent(e);
      } catch (err) {
        this.log.error({ err: toPhosError(err) }, 'agent socket event failed');
      }
    });
    this.log.info({ path: this.path }, 'libphos socket listening');
  }

  stop(): void {
    if (this.hidden > 0 && this.isFile() && existsSync(`${this.path}.busy`)) renameSync(`${this.path}.busy`, this.path);
    pccl.agentServerClose();
    for (const c of this.conns.values()) this.failPending(c, new PhosError('AGENT_UNAVAILABLE', 'the agent is stopping'));
  }

  linked(pid: number): boolean {
    return this.byPid.get(pid)?.hello != null;
  }

  hello(pid: number): Frame<'hello'> | null {
    return this.byPid.get(pid)?.hello ?? null;
  }

  /** The GPUs (UUID per device ordinal) pid's latest hello or thaw named, if it named them. */
  lastGpus(pid: number): string[] | undefined {
    return this.gpus.get(pid);
  }

  /** A thaw reply named pid's GPUs (after a restore onto other GPUs they differ from its resume hello's). */
  noteGpus(pid: number, gpus: string[]): void {
    this.gpus.set(pid, gpus);
  }

  /**
   * While CRIU dumps a frozen process, libphos keeps trying to reconnect, and a socket connected to the
   * agent cannot be dumped: its connections are refused, and the socket path is moved aside so connect()
   * fails before it reaches the agent (other processes cannot connect meanwhile either; counted, so
   * concurrent dumps nest).
   */
  refuse(pid: number): void {
    this.refused.add(pid);
    if (this.hidden++ === 0 && this.isFile() && existsSync(this.path)) renameSync(this.path, `${this.path}.busy`);
  }

  accept(pid: number): void {
    if (!this.refused.delete(pid)) return;
    if (--this.hidden === 0 && this.isFile() && existsSync(`${this.path}.busy`)) renameSync(`${this.path}.busy`, this.path);
  }

  /** A filesystem socket; '@name' is abstract (no file to move aside: refused pids are only closed on connect). */
  private isFile(): boolean {
    return !this.path.startsWith('@');
  }

  /** pid has an open connection (registered or not). */
  connected(pid: number): boolean {
    return [...this.conns.values()].some((c) => c.pid === pid);
  }

  /** Closes pid's connection (libphos then carries on without the agent). */
  close(pid: number): void {
    const c = this.byPid.get(pid);
    if (c) pccl.agentClose(c.conn);
  }

  /** Resolves at the next hello of pid (a reconnect after freeze or restore). */
  waitForHello(pid: number, timeoutMs: number): Promise<Frame<'hello'>> {
    return new Promise((resolve, reject) => {
      const w = { pid, resolve: (h: Frame<'hello'>) => { clearTimeout(timer); resolve(h); } };
      const timer = setTimeout(() => {
        this.helloWaiters = this.helloWaiters.filter((x) => x !== w);
        reject(new PhosError('TIMEOUT', `pid ${pid}: libphos did not reconnect within ${timeoutMs} ms`));
      }, timeoutMs);
      this.helloWaiters.push(w);
    });
  }

  /** Sends req `op` to pid's libphos and resolves with the checked result fields of its rep. */
  request(pid: number, op: Op, extra: { chunks?: number[]; allocIds?: number[]; pending?: number[] } = {}, fds: number[] = [], timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const c = this.byPid.get(pid);
    if (!c?.hello) return Promise.reject(new PhosError('ILLEGAL_STATE', `pid ${pid}: libphos is not connected to the agent`));
    const id = this.nextId++;
    const frame = { v: PROTO_VERSION, id, t: 'req', op, ...extra } as Frame<'req'>;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        c.pending.delete(id);
        reject(new PhosError('TIMEOUT', `pid ${pid}: libphos did not answer ${op} within ${timeoutMs} ms`));
      }, timeoutMs);
      c.pending.set(id, { op, resolve, reject, timer });
      try {
        pccl.agentSend(c.conn, Buffer.from(encodeFrame(frame)), fds);
      } catch (err) {
        clearTimeout(timer);
        c.pending.delete(id);
        reject(toPhosError(err));
      }
    });
  }

  private onEvent(e: pccl.AgentEvent): void {
    if (e.type === 'connect') {
      this.conns.set(e.conn, { conn: e.conn, pid: e.pid, uid: e.uid, hello: null, queue: Promise.resolve(), pending: new Map() });
      if (this.refused.has(e.pid)) { pccl.agentClose(e.conn); return; }
      this.log.debug({ conn: e.conn, pid: e.pid, uid: e.uid }, 'libphos connected');
      return;
    }
    const c = this.conns.get(e.conn);
    if (e.type === 'closed') {
      if (!c) return;
      this.conns.delete(e.conn);
      if (this.byPid.get(c.pid) === c) this.byPid.delete(c.pid);
      this.failPending(c, new PhosError('AGENT_UNAVAILABLE', `pid ${c.pid}: libphos link closed (${e.reason})`));
      this.log.info({ pid: c.pid, reason: e.reason }, 'libphos link closed');
      if (c.hello) this.hooks.onClosed(c.pid, e.reason);
      return;
    }
    if (!c) {
      for (const fd of e.fds) pccl.closeFd(fd);
      return;
    }
    c.queue = c.queue.then(() => this.onPacket(c, e.bytes, e.fds)).catch((err: unknown) => {
      this.log.warn({ pid: c.pid, err: toPhosError(err) }, 'bad frame from libphos; closing its link');
      this.closeConn(c);
    });
  }

  private closeConn(c: Conn): void {
    try { pccl.agentClose(c.conn); } catch { /* already closed */ }
  }

  private async onPacket(c: Conn, bytes: Buffer, fds: number[]): Promise<void> {
    let handedOn = false;
    try {
      const f = decodeFrame(bytes);
      if (!c.hello && f.t !== 'hello') throw new PhosError('BAD_FRAME', `pid ${c.pid}: '${f.t}' before hello`);
      switch (f.t) {
        case 'hello': await this.onHello(c, f, fds); handedOn = true; break;
        case 'alloc': {
          const fd = fds[0];
          if (fd === undefined) throw new PhosError('BAD_FRAME', `pid ${c.pid}: alloc ${f.id} came without its fd`);
          try { await this.keeper.import(c.pid, f, fd, this.gpus.get(c.pid)?.[f.device ?? 0]); } finally { pccl.closeFd(fd); handedOn = true; for (const x of fds.slice(1)) pccl.closeFd(x); }
          break;
        }
        case 'free': await this.keeper.free(c.pid, f.id); break;
        case 'rep': this.onRep(c, f); break;
        case 'event':
          this.log.info({ pid: c.pid, kind: f.kind, chunks: f.chunks?.length, message: f.message }, 'libphos event');
          this.hooks.onEvent?.(c.pid, f);
          break;
        default: throw new PhosError('BAD_FRAME', `pid ${c.pid}: libphos may not send '${f.t}'`);
      }
    } finally {
      if (!handedOn) for (const fd of fds) pccl.closeFd(fd);
    }
  }

  private async onHello(c: Conn, f: Frame<'hello'>, fds: number[]): Promise<void> {
    for (const fd of fds) pccl.closeFd(fd); // the staging ring is not used by this agent's flows yet
    if (c.hello) throw new PhosError('BAD_FRAME', `pid ${c.pid}: second hello`);
    if (f.pid !== c.pid) throw new PhosError('BAD_FRAME', `hello claims pid ${f.pid} but the socket peer is pid ${c.pid}: a process registers only itself`);
    if (!this.hooks.isManaged(c.pid)) throw new PhosError('NOT_MANAGED', `pid ${c.pid} was not started by phos; its libphos is not registered`);
    const old = this.byPid.get(c.pid);
    if (old && old !== c) this.closeConn(old);
    c.hello = f;
    this.byPid.set(c.pid, c);
    if (f.gpus) this.gpus.set(c.pid, f.gpus);
    else this.gpus.delete(c.pid);
    pccl.agentSend(c.conn, Buffer.from(encodeFrame({ v: PROTO_VERSION, t: 'welcome', node: 'local' })), []);
    this.log.info({ pid: c.pid, job: f.job, vaBase: f.vaBase, resume: f.resume ?? false, gpus: f.gpus }, 'libphos registered');
    this.hooks.onHello(c.pid, f);
    const ws = this.helloWaiters.filter((w) => w.pid === c.pid);
    this.helloWaiters = this.helloWaiters.filter((w) => w.pid !== c.pid);
    for (const w of ws) w.resolve(f);
  }

  private onRep(c: Conn, f: Frame<'rep'>): void {
    const p = c.pending.get(f.id);
    if (!p) { this.log.warn({ pid: c.pid, id: f.id }, 'rep for no request'); return; }
    c.pending.delete(f.id);
    clearTimeout(p.timer);
    if (!f.ok) {
      const e = PhosError.fromWire({ code: f.err?.code, message: `pid ${c.pid}: libphos ${p.op}: ${f.err?.message ?? 'failed'}` });
      p.reject(e);
      return;
    }
    const problem = check(OP_RESULTS[p.op], f);
    if (problem) { p.reject(new PhosError('BAD_FRAME', `pid ${c.pid}: rep to ${p.op}: ${problem}`)); return; }
    p.resolve(f as unknown as Record<string, unknown>);
  }

  private failPending(c: Conn, e: PhosError): void {
    for (const p of c.pending.values()) { clearTimeout(p.timer); p.reject(e); }
    c.pending.clear();
  }
}
