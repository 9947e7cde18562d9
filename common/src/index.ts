// common: small pieces every TS room uses and that are not a wire format (those live in proto/).
export { createLogger, type Logger, type LoggerOptions } from './logger.ts';
export { CRIU_KDAT_DIR, CRIU_MIN_VERSION, CRIU_THP_PATCH_MARKER, criuBinary, parseCriuVersion } from './criu-version.ts';
export { hostsUnavailable, makeHosts, sweepStaleHosts, type Host, type Hosts } from './netns.ts';
export { startLocalMesh, type LocalMesh, type LocalMeshOptions, type LocalNode } from './local-mesh.ts';
export { fromNatsError, requestReply, serveRequests } from './nats-rpc.ts';
