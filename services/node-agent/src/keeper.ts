// The keeper: a second reference, held by the agent, to every device allocation libphos announces
// (alloc frame + fd), so the memory outlives the app's own mappings during a freeze. It owns the
// imported regions and spare memory; pccl moves the bytes. Which allocations belong to whom is here, and
// which of the agent's GPUs holds each (a process's device ordinals are matched to the agent's by UUID).
import type { Logger } from '../../../common/src/index.ts';
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError } from '../../../proto/src/index.ts';
import { probeGpus } from './gpu-probe.ts';

/**
 * The UUID of each GPU as the agent's driver numbers them (index = the agent's ordinal), from gpu-probe
 * run against the same libcuda (cudasim when configured). Empty when the probe finds no driver.
 */
export async function probeAgentGpus(libcuda: string | null): Promise<string[]> {
  return (await probeGpus(libcuda)).gpus.map((d) => d.uuid);
}

export interface KeptAllocation {
  /** libphos's allocation id. */
  id: number;
  va: number;
  size: number;
  kind: 'slab' | 'app';
  /** pccl region id of the imported memory. */
  region: number;
  /** Device ordinal in the app's view (absent = 0). */
  device?: number;
  /** The agent's ordinal of the GPU the region is on (absent = 0). */
  gpu?: number;
}

export class Keeper {
  private readonly byPid = new Map<number, Map<number, KeptAllocation>>();
  /** Regions a background fill still writes into: their release waits for unhold(). */
  private readonly held = new Set<number>();
  private readonly deferred = new Set<number>();
  private gpus: Promise<string[]> | null = null;

  constructor(private readonly log: Logger, private readonly libcuda: string | null = null) {}

  /** The agent's GPUs by UUID (index = the agent's ordinal); probed once. */
  agentGpus(): Promise<string[]> {
    this.gpus ??= probeAgentGpus(this.libcuda);
    return this.gpus;
  }

  /**
   * The agent's ordinal of the GPU with this UUID. Without a UUID (an older libphos or image), or when the
   * agent's probe found none, the app's ordinal is taken as the agent's (both see every GPU in order).
   */
  async agentOrdinal(uuid: string | undefined, appOrdinal: number): Promise<number> {
    const gpus = await this.agentGpus();
    if (uuid === undefined || gpus.length === 0) return appOrdinal;
    const i = gpus.indexOf(uuid);
    if (i < 0) throw new PhosError('NOT_FOUND', `GPU ${uuid} is not one of this node's GPUs (${gpus.join(', ')})`, { details: { uuid } });
    return i;
  }

  /** Imports fd (the caller closes it afterwards) for pid's allocation id, on the GPU with `uuid` (the app's ordinal a.device). */
  async import(pid: number, a: { id: number; va: number; size: number; kind?: 'slab' | 'app'; device?: number }, fd: number, uuid?: string): Promise<KeptAllocation> {
    const device = a.device ?? 0;
    // A UUID the agent does not know (its probe saw another driver) must not cost the app its keeper:
    // the app's ordinal is the best guess, and it is logged.
    const gpu = await this.agentOrdinal(uuid, device).catch((err: unknown) => {
      this.log.warn({ pid, alloc: a.id, uuid, device, err }, 'allocation on a GPU the agent does not list; kept on the same ordinal');
      return device;
    });
    const r = await pccl.keeperImport(fd, a.size, gpu);
    const kept: KeptAllocation = { id: a.id, va: a.va, size: a.size, kind: a.kind ?? 'slab', region: r.id, device, gpu };
    let m = this.byPid.get(pid);
    if (!m) this.byPid.set(pid, (m = new Map()));
    const old = m.get(a.id);
    m.set(a.id, kept);
    if (old) await this.release(old.region).catch(() => undefined);
    this.log.debug({ pid, alloc: a.id, va: a.va, bytes: a.size, device, gpu, ms: r.ms }, 'kept');
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
