// The pino logger factory every phos component uses: JSON lines on stderr (stdout is for results),
// one root logger per process made in its main.ts, child loggers per component and per operation.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LoggerOptions {
  /** Component family: 'agent', 'coordinator', 'cli', 'test'. */
  service: string;
  /** Node name, when the process belongs to one. */
  node?: string;
  /** @default process.env.PHOS_LOG_LEVEL ?? 'info' */
  level?: LevelWithSilent;
  /** File descriptor to write to. @default 2 (stderr) */
  fd?: number;
}

const LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function createLogger(opts: LoggerOptions): Logger {
  const envLevel = process.env.PHOS_LOG_LEVEL;
  const level = opts.level ?? (envLevel && LEVELS.includes(envLevel) ? (envLevel as LevelWithSilent) : 'info');
  const base: Record<string, string> = { service: opts.service };
  if (opts.node) base.node = opts.node;
  return pino({ level, base, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ fd: opts.fd ?? 2, sync: true }));
}
