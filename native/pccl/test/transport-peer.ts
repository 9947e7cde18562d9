// One side of a pccl transport session as a process of its own, so that it can run inside a network
// namespace (`ip netns exec NS node --import tsx transport-peer.ts ...`); used by the multi-host test and
// bench/pccl.ts. Prints one JSON record per line on stdout; exits 0 once the session ended.
//   recv HOST STREAMS DST_FILE BYTES              -> {type:'listening', port}, ..., {type:'end', ...}
//   send HOST PORT STREAMS SRC_FILE BYTES CHUNK RUNS [BANDWIDTH] -> {type:'run', ms, bytes} per run, {type:'closed', ...}
import { closeSync, openSync } from 'node:fs';
import * as pccl from '../pccl.ts';

const out = (o: unknown): void => void process.stdout.write(JSON.stringify(o) + '\n');

function mapFile(path: string, size: number, writable: boolean): number {
  const fd = openSync(path, writable ? 'r+' : 'r');
  try {
    return pccl.mapFd(fd, size, writable);
  } finally {
    closeSync(fd);
  }
}

async function main(argv: string[]): Promise<void> {
  const [role, ...a] = argv;
  if (role === 'recv') {
    const [host, streams, dstFile, bytes] = a as [string, string, string, string];
    const dst = mapFile(dstFile, Number(bytes), true);
    const rx = pccl.transportListen({ host, streams: Number(streams) }, (e) => {
      if (e.type === 'chunk' || e.type === 'progress') return;
      out(e.type === 'corrupt' || e.type === 'error' ? { ...e, error: { code: e.error.code, message: e.error.message } } : e);
      if (e.type === 'end') {
        pccl.transportReceiverClose(rx.id);
        pccl.unmap(dst);
      }
    });
    pccl.transportRegisterDest(rx.id, 1, { dst });
    out({ type: 'listening', port: rx.port });
    return;
  }
  if (role === 'send') {
    const [host, port, streams, srcFile, bytes, chunk, runs, bw] = a as [string, string, string, string, string, string, string, string?];
    const size = Number(bytes);
    const src = mapFile(srcFile, size, false);
    const tx = await pccl.transportConnect({
      host,
      port: Number(port),
      streams: Number(streams),
      bandwidthBytesPerSec: bw ? Number(bw) : null,
      onEvent: (e) => out({ side: 'sender', ...e }),
    });
    const items: pccl.TransportItem[] = [];
    for (let o = 0; o < size; o += Number(chunk)) items.push({ src, offset: o, length: Math.min(Number(chunk), size - o), alloc: 1, chunkOffset: o });
    for (let r = 0; r < Number(runs); r++) {
      const res = await pccl.transportSend(tx.id, items);
      out({ type: 'run', ms: res.ms, bytes: res.bytes, perStream: res.perStream });
    }
    out({ type: 'closed', ...(await pccl.transportClose(tx.id)) });
    pccl.unmap(src);
    return;
  }
  throw new Error('usage: transport-peer.ts recv HOST STREAMS DST BYTES | send HOST PORT STREAMS SRC BYTES CHUNK RUNS [BANDWIDTH]');
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const e = err as { code?: string; message?: string };
  out({ type: 'failed', code: e.code ?? 'INTERNAL', message: e.message ?? String(err) });
  process.exit(1);
});
