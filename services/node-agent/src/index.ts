// node-agent: one per GPU node; drives libphos, the keeper, the driver checkpoint API and CRIU.
export { criuDump, criuRestore, criuVersion, criuBinary, criuLogReason, type DumpOptions, type RestoreOptions, type CriuOptions } from './criu.ts';
export { launch, type LaunchOptions, type Launched } from './launcher.ts';
