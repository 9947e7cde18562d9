// node-agent: one per GPU node; drives libphos, the keeper, the driver checkpoint API and CRIU.
export { criuDump, criuRestore, criuVersion, primeCriuCache, criuBinary, criuLogReason, type DumpOptions, type RestoreOptions, type CriuOptions } from './criu.ts';
export { trimZeroPages, type ZeroTrim } from './criu-zero.ts';
export { launch, type LaunchOptions, type Launched } from './launcher.ts';
export { Agent } from './agent.ts';
export { compileAgentOptions, loadAgentConfig, type AgentOptions, type CompiledAgentOptions } from './agent-options.ts';
export { ProcessRegistry } from './process-registry.ts';
export { ProcessMachine, IllegalStateError, PROCESS_TRANSITIONS, PROCESS_STATE_DOCS, type ProcessState } from './process-machine.ts';
export { runSteps, type Step, type StepReport } from './step-runner.ts';
export { placeGpus, type GpuPlacement } from './restore.ts';
