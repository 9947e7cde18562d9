// Every NATS subject and KV bucket name phos uses. Call sites use these functions, never literals, so a
// rename happens here once. All subjects carry the protocol version as their second token.
const ROOT = 'phos.v1';

/** Node names go into subject tokens, so they may not hold '.', '*', '>' or spaces. */
export const NODE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export const subjects = Object.freeze({
  /** Requests to the coordinator: `phos.v1.coord.<verb>` (migrate, cancel, nodes, migrations). */
  coord: (verb: string) => `${ROOT}.coord.${verb}`,
  /** Requests to one node agent: `phos.v1.agent.<node>.<verb>`. */
  agent: (node: string, verb: string) => `${ROOT}.agent.${node}.${verb}`,
  /** Agent heartbeats, published by each agent. */
  heartbeat: (node: string) => `${ROOT}.hb.${node}`,
  /** Progress events of one migration (published by the coordinator, watched by the CLI). */
  migrationEvents: (id: string) => `${ROOT}.mig.${id}.events`,
  /** Pre-copy progress of one migration (published by the source agent, folded into the record by the coordinator). */
  migrationProgress: (id: string) => `${ROOT}.mig.${id}.progress`,
  /** Post-copy: the chunks the app waits for on the target (published by the target agent, served first by the source). */
  migrationDemand: (id: string) => `${ROOT}.mig.${id}.demand`,
});

/** JetStream KV buckets holding cluster state. */
export const buckets = Object.freeze({
  nodes: 'phos-nodes',
  processes: 'phos-processes',
  migrations: 'phos-migrations',
  snapshots: 'phos-snapshots',
});
