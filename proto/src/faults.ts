// Named fault points for tests: `PHOS_FAULT=<point>` arms one of them in the process that reads it.
// Each point names where it fires and what it breaks; every rollback or recovery path has a test that
// triggers one. Names are stable once shipped (tests and CI jobs spell them).

export const FAULT_POINTS = Object.freeze({
  /**
   * pccl transport sender: one byte of the first chunk's bytes differs on the wire while the header
   * keeps the true hash, once per sender. The receiver reports IMAGE_CORRUPT and the sender re-sends.
   */
  'transport-flip-byte': 'pccl sender flips one byte of its first chunk on the wire',
  /**
   * pccl transport sender: the last stream's connection is shut down halfway through its second
   * chunk, once per sender. The sender reconnects that stream and re-sends what was not acknowledged.
   */
  'transport-break-stream': 'pccl sender cuts its last stream mid-chunk',
  /** node agent, keeper path: libphos froze (and closed its socket); rollback thaws it through the keeper. */
  'agent-after-freeze': 'agent checkpoint step fails right after the libphos freeze',
  /** node agent: the driver checkpointed the process; rollback: driver restore, unlock (+ thaw). */
  'agent-after-checkpoint': 'agent checkpoint step fails right after the driver checkpoint',
  /** node agent: CRIU dumped (dump: left stopped); rollback: SIGCONT, driver restore, unlock (+ thaw). */
  'agent-before-seal': 'agent checkpoint step fails before the image is sealed',
} as const);

export type FaultPoint = keyof typeof FAULT_POINTS;

/** The points the node agent's checkpoint procedures fire (each fails its step with INTERNAL). */
export const AGENT_FAULT_POINTS = Object.freeze(['agent-after-freeze', 'agent-after-checkpoint', 'agent-before-seal'] as const satisfies readonly FaultPoint[]);
export type AgentFaultPoint = (typeof AGENT_FAULT_POINTS)[number];

export function isFaultPoint(v: unknown): v is FaultPoint {
  return typeof v === 'string' && Object.hasOwn(FAULT_POINTS, v);
}

/**
 * The fault point armed by `PHOS_FAULT` in `env`, or null. An unknown name is an error rather than a
 * silently unarmed test.
 */
export function activeFault(env: NodeJS.ProcessEnv = process.env): FaultPoint | null {
  const v = env.PHOS_FAULT;
  if (v === undefined || v === '') return null;
  if (!isFaultPoint(v)) throw new Error(`PHOS_FAULT=${v} is not a fault point; known: ${Object.keys(FAULT_POINTS).join(', ')}`);
  return v;
}
