// coordinator: the cluster brain (NATS API, cluster state in JetStream KV, migration records).
export { Coordinator, type ProcessRecord } from './coordinator.ts';
export { MIGRATION_TRANSITIONS, TERMINAL_PHASES, IllegalStateError, checkTransition, isTerminal, type MigrationState } from './migration-machine.ts';
export { compileCoordinatorOptions, type CoordinatorOptions, type CompiledCoordinatorOptions } from './options.ts';
export { openBus, type Bus, type KvStore } from './bus.ts';
