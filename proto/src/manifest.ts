// The image manifest (manifest.json at the root of every image directory). An image holds GPU chunk
// data in gpu/ (named by hash, deduplicated against the parent image) and the CRIU image in criu/.
import { s, type Infer } from './schema.ts';

const hex64 = s.string(/^[0-9a-f]{16}$/);

export const MANIFEST_SCHEMA = s.object({
  formatVersion: s.uint(),
  createdAt: s.string(),
  kind: s.oneOf(['pre-dump', 'dump'] as const),
  source: s.object({ host: s.string(), node: s.string(), pid: s.uint(), job: s.string() }),
  gpu: s.object({ model: s.string(), uuid: s.string(), driverVersion: s.uint(), simulated: s.bool() }),
  vaRegion: s.object({ base: s.uint(), size: s.uint() }),
  chunkSize: s.uint(),
  /** Device memory the process held, in the order libphos created it. */
  allocations: s.array(s.object({
    id: s.uint(), va: s.uint(), size: s.uint(),
    /** Device ordinal (the process's view) the allocation lives on; absent = 0. */
    device: s.optional(s.uint()),
  })),
  /** UUID of each device ordinal the process saw when it was checkpointed (index = ordinal); absent = one GPU. */
  gpus: s.optional(s.array(s.string())),
  /** One entry per chunk of every allocation: its 64-bit hash (hex) and the file under gpu/ holding it. */
  chunks: s.array(s.object({ alloc: s.uint(), index: s.uint(), hash: hex64, file: s.string() })),
  criu: s.object({ version: s.string(), dir: s.string() }),
  /** Path of the parent image for incremental pre-dumps (chunks with equal hashes live there). */
  parent: s.nullable(s.string()),
  sealed: s.bool(),
});

export type Manifest = Infer<typeof MANIFEST_SCHEMA>;
