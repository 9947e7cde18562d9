// Thaw of a frozen libphos (freeze/thaw contract in proto/src/frames.ts): wait for its hello {resume},
// then hand one fd per allocation back (a new fd per keeper region, at most 16 per frame); libphos maps
// each at its old address and unblocks once `remaining` reaches 0.
import * as pccl from '../../../native/pccl/pccl.ts';
import { PhosError, type Frame } from '../../../proto/src/index.ts';
import type { LibphosLink } from './libphos-link.ts';

/** How long a frozen libphos may take to reconnect once the socket is back. */
export const RECONNECT_TIMEOUT_MS = 10_000;

export async function thawProcess(link: LibphosLink, pid: number, allocs: { id: number; region: number }[], hello: Promise<Frame<'hello'>> | null, pending: number[] = []): Promise<number> {
  const t0 = performance.now();
  if (!link.linked(pid)) {
    const h = await (hello ?? link.waitForHello(pid, RECONNECT_TIMEOUT_MS));
    if (!h.resume) throw new PhosError('ILLEGAL_STATE', `pid ${pid} reconnected without resume: it lost its frozen state`);
  }
  if (allocs.length === 0) throw new PhosError('ILLEGAL_STATE', `pid ${pid}: nothing to thaw`);
  for (let i = 0; i < allocs.length; i += pccl.MAX_PACKET_FDS) {
    const part = allocs.slice(i, i + pccl.MAX_PACKET_FDS);
    const fds: number[] = [];
    try {
      for (const a of part) fds.push(await pccl.keeperExportFd(a.region));
      const rep = await link.request(pid, 'thaw', { allocIds: part.map((a) => a.id), ...(i === 0 && pending.length ? { pending } : {}) }, fds);
      const last = i + pccl.MAX_PACKET_FDS >= allocs.length;
      if (last && typeof rep.remaining === 'number' && rep.remaining !== 0) throw new PhosError('INTERNAL', `pid ${pid}: libphos still misses ${rep.remaining} allocations after the last thaw frame`);
      if (last && Array.isArray(rep.gpus)) link.noteGpus(pid, rep.gpus as string[]);
    } finally {
      for (const fd of fds) pccl.closeFd(fd);
    }
  }
  return performance.now() - t0;
}
