// Fault points of the node agent's checkpoint procedures: PHOS_FAULT=<point> in the agent's environment
// makes that step fail with INTERNAL "fault injected", so every rollback path has a test that triggers it.
// Wire strings never change.

export const AGENT_FAULT_POINTS = Object.freeze([
  /** keeper path: libphos froze (and closed its socket); rollback thaws it through the keeper. */
  'agent-after-freeze',
  /** the driver checkpointed the process; rollback: driver restore, unlock (+ thaw). */
  'agent-after-checkpoint',
  /** CRIU dumped (dump: left stopped); rollback: SIGCONT, driver restore, unlock (+ thaw). */
  'agent-before-seal',
] as const);
export type AgentFaultPoint = (typeof AGENT_FAULT_POINTS)[number];
