// Every error code phos sends over a wire or prints, with its meaning, default remedy and CLI exit
// status. Codes are stable once shipped: add new ones, never rename or renumber an existing one.

export const ERROR_CODES = Object.freeze({
  BAD_FRAME: { exit: 2, meaning: 'a message could not be decoded or failed validation', remedy: 'check that both sides run the same phos version' },
  PROTO_VERSION: { exit: 2, meaning: 'the peer speaks another protocol version', remedy: 'upgrade phos on every node to the same release' },
  BAD_ARGS: { exit: 2, meaning: 'a command was called with invalid arguments', remedy: 'see --help' },
  NOT_FOUND: { exit: 3, meaning: 'the named object does not exist', remedy: 'list what exists with phos ps / phos nodes' },
  NOT_MANAGED: { exit: 3, meaning: 'the process was not started by phos', remedy: 'start it with phos run -- CMD' },
  CRIU_MISSING: { exit: 4, meaning: 'criu is not installed or too old', remedy: 'run: bash deploy/install.sh' },
  CRIU_FAILED: { exit: 4, meaning: 'criu reported a failure', remedy: 'see the criu log named in the message' },
  DRIVER_FAILED: { exit: 4, meaning: 'the CUDA driver returned an error', remedy: 'see the CUDA error named in the message' },
  NATS_UNAVAILABLE: { exit: 5, meaning: 'the NATS server cannot be reached', remedy: 'start it with phos up, or set NATS_URL' },
  AGENT_UNAVAILABLE: { exit: 5, meaning: 'the node agent cannot be reached', remedy: 'start it with phos up, or check /run/phos/agent.sock' },
  TIMEOUT: { exit: 6, meaning: 'an operation did not finish in time', remedy: 'retry with a longer --timeout' },
  IMAGE_CORRUPT: { exit: 7, meaning: 'an image file or chunk does not match its recorded hash', remedy: 'restore from another image; this one is damaged' },
  DISK_FULL: { exit: 7, meaning: 'the image directory ran out of space', remedy: 'free space or choose another --dir' },
  ILLEGAL_STATE: { exit: 8, meaning: 'the operation is not allowed in the current state', remedy: 'check the state with phos ps / phos migrations' },
  CANCELLED: { exit: 9, meaning: 'the operation was cancelled', remedy: 'nothing to do; the source keeps running' },
  INTERNAL: { exit: 70, meaning: 'a bug in phos', remedy: 'report it with the log' },
} as const);

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** The wire form of an error: what crosses NATS, the agent socket and --json output. */
export interface WireError {
  code: ErrorCode;
  message: string;
  remedy: string;
  details?: Record<string, unknown>;
}

/**
 * The one error type phos raises across rooms: `code` for callers to branch on, `message` naming the
 * object (pid, node, chunk, path), `remedy` naming the command or action that fixes it.
 */
export class PhosError extends Error {
  override readonly name = 'PhosError';
  readonly code: ErrorCode;
  readonly remedy: string;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, opts: { remedy?: string; details?: Record<string, unknown>; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.code = code;
    this.remedy = opts.remedy ?? ERROR_CODES[code].remedy;
    this.details = opts.details ?? {};
  }

  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }

  toWire(): WireError {
    const w: WireError = { code: this.code, message: this.message, remedy: this.remedy };
    if (Object.keys(this.details).length > 0) w.details = this.details;
    return w;
  }

  /** Rebuilds an error sent by a peer; an unknown code becomes INTERNAL with the original kept. */
  static fromWire(w: unknown): PhosError {
    const o = (typeof w === 'object' && w !== null ? w : {}) as Record<string, unknown>;
    const code = isErrorCode(o.code) ? o.code : 'INTERNAL';
    const message = typeof o.message === 'string' ? o.message : `malformed error from peer: ${JSON.stringify(w)?.slice(0, 200)}`;
    const details = typeof o.details === 'object' && o.details !== null ? (o.details as Record<string, unknown>) : {};
    if (code !== o.code) details.peerCode = o.code;
    return new PhosError(code, message, { remedy: typeof o.remedy === 'string' ? o.remedy : undefined, details });
  }
}

/** Wraps anything thrown into a PhosError, keeping the original as `cause`. */
export function toPhosError(err: unknown, fallback: ErrorCode = 'INTERNAL'): PhosError {
  if (err instanceof PhosError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new PhosError(fallback, message, { cause: err });
}
