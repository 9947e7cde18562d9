// The keeper: a second reference, held by the agent, to every device allocation libphos announces
// (alloc frame + fd), so the memory outlives the app's own mappings during a freeze. It owns the
// imported regions and spare memory; pccl moves the bytes. Which allocations belong to whom is here.
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';

export interface KeptAllocation {
  /** libphos's allocation id. */
  id: number;
  va: number;
  size: number;
  kind: 'slab' | 'app';
  /** pccl region id of the imported memory. */
  region: number;
}

export class Keeper {
  private readonly byPid = new Map<number, Map<number, KeptAllocation>>();
  /** Regions a background fill still writes into: their release waits for unhold(). */
  private readonly held = new Set<number>();
  private readonly deferred = new Set<number>();

  constructor(private readonly log: Logger) {}

  /** Imports fd (the caller closes it afterwards) for pid's allocation id. */
  async import(pid: number, a: { id: number; va: number; size: number; kind?: 'slab' | 'app' }, fd: number): Promise<KeptAllocation> {
    const r = await pccl.keeperImport(fd, a.size);
    const kept: KeptAllocation = { id: a.id, va: a.va, size: a.size, kind: a.kind ?? 'slab', region: r.id };
    let m = this.byPid.get(pid);
    if (!m) this.byPid.set(pid, (m = new Map()));
    const old = m.get(a.id);
    m.set(a.id, kept);
    if (old) await this.release(old.region).catch(() => undefined);
    this.log.debug({ pid, alloc: a.id, va: a.va, bytes: a.size, ms: r.ms }, 'kept');
    return kept;
  }

  async free(pid: number, id: number): Promise<void> {
    const a = this.byPid.get(pid)?.get(id);
    if (!a) return;
    this.byPid.get(pid)!.delete(id);
    await this.release(a.region);
    this.log.debug({ pid, alloc: id }, 'released');
  }

  /** Keeps regions alive while a fill writes into them (a free or the process's end defers their release). */
  hold(regions: number[]): void {
    for (const r of regions) this.held.add(r);
  }

  /** Ends hold(); releases the regions whose release was deferred meanwhile. */
  async unhold(regions: number[]): Promise<void> {
    for (const r of regions) {
      this.held.delete(r);
      if (this.deferred.delete(r)) await pccl.keeperRelease(r).catch((err: unknown) => this.log.warn({ region: r, err }, 'release failed'));
    }
  }

  private async release(region: number): Promise<void> {
    if (this.held.has(region)) { this.deferred.add(region); return; }
    await pccl.keeperRelease(region);
  }

  /** The allocations of pid, in libphos's creation order (ids ascend). */
  allocations(pid: number): KeptAllocation[] {
    return [...(this.byPid.get(pid)?.values() ?? [])].sort((a, b) => a.id - b.id);
  }

  bytes(pid: number): number {
    return this.allocations(pid).reduce((s, a) => s + a.size, 0);
  }

  /** Drops every reference held for pid (process gone, or its image sealed). Idempotent. */
  async releaseAll(pid: number): Promise<void> {
    const m = this.byPid.get(pid);
    if (!m) return;
    this.byPid.delete(pid);
    for (const a of m.values()) await this.release(a.region).catch((err: unknown) => this.log.warn({ pid, alloc: a.id, err }, 'release failed'));
  }

  /** Moves the records of oldPid to newPid (a restore that lands under another pid). */
  rekey(oldPid: number, newPid: number): void {
    const m = this.byPid.get(oldPid);
    if (!m || oldPid === newPid) return;
    this.byPid.delete(oldPid);
    this.byPid.set(newPid, m);
  }

  /** Adopts allocations made for a restore (regions the keeper allocated itself). */
  adopt(pid: number, list: KeptAllocation[]): void {
    const m = new Map<number, KeptAllocation>();
    for (const a of list) m.set(a.id, a);
    this.byPid.set(pid, m);
  }
}
