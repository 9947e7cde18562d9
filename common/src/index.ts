// common: small pieces every TS room uses and that are not a wire format (those live in proto/).
export { createLogger, type Logger, type LoggerOptions } from './logger.ts';
export { CRIU_MIN_VERSION, criuBinary, parseCriuVersion } from './criu-version.ts';
