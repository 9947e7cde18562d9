// Shared by the pccl integration tests (test/integration/pccl-*.test.ts): building the small C test
// programs in this directory, a reference implementation of libphos's chunk hash, and an event queue
// for the agent socket.
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentEvent } from '../pccl.ts';

export const TEST_SRC = fileURLToPath(new URL('.', import.meta.url));

/** Compiles native/pccl/test/<name>.c into a fresh temp dir with `cc`; returns the binary's path. */
export function compileC(name: string, extra: string[] = []): string {
  const out = join(mkdtempSync(join(tmpdir(), `pccl-${name}-`)), name);
  execFileSync('cc', ['-O1', '-Wall', '-Werror', '-o', out, join(TEST_SRC, `${name}.c`), ...extra], { stdio: 'pipe' });
  return out;
}

const M64 = (1n << 64n) - 1n;

function fmix64(k: bigint): bigint {
  k ^= k >> 33n;
  k = (k * 0xff51afd7ed558ccdn) & M64;
  k ^= k >> 33n;
  k = (k * 0xc4ceb9fe1a85ec53n) & M64;
  k ^= k >> 33n;
  return k;
}

/**
 * libphos's per-chunk hash (native/hijack/src/chunk-hash.h), written out independently in BigInt:
 * h = fmix64(sum_i fmix64(w[i] ^ (i+1)*0x9E3779B97F4A7C15) ^ n*0xD6E8FEB86659FD93), words little-endian,
 * a trailing partial word zero-padded. Returns 16 lower-case hex digits.
 */
export function chunkHash(buf: Buffer): string {
  const n = Math.ceil(buf.length / 8);
  const padded = Buffer.alloc(n * 8);
  buf.copy(padded);
  let sum = 0n;
  for (let i = 0; i < n; i++) {
    const w = padded.readBigUInt64LE(i * 8);
    sum = (sum + fmix64(w ^ ((BigInt(i + 1) * 0x9e3779b97f4a7c15n) & M64))) & M64;
  }
  return fmix64(sum ^ ((BigInt(n) * 0xd6e8feb86659fd93n) & M64)).toString(16).padStart(16, '0');
}

/** Collects agent socket events and lets a test await the next one matching a predicate. */
export class EventQueue {
  readonly all: AgentEvent[] = [];
  private waiters: { pred: (e: AgentEvent) => boolean; resolve: (e: AgentEvent) => void }[] = [];
  private taken = new Set<AgentEvent>();

  readonly push = (e: AgentEvent): void => {
    this.all.push(e);
    const w = this.waiters.find((x) => x.pred(e));
    if (w) {
      this.waiters.splice(this.waiters.indexOf(w), 1);
      this.taken.add(e);
      w.resolve(e);
    }
  };

  next<T extends AgentEvent['type']>(type: T, pred: (e: Extract<AgentEvent, { type: T }>) => boolean = () => true, timeoutMs = 10_000): Promise<Extract<AgentEvent, { type: T }>> {
    const match = (e: AgentEvent): boolean => e.type === type && pred(e as Extract<AgentEvent, { type: T }>);
    const seen = this.all.find((e) => !this.taken.has(e) && match(e));
    if (seen) {
      this.taken.add(seen);
      return Promise.resolve(seen as Extract<AgentEvent, { type: T }>);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no '${type}' event within ${timeoutMs} ms; saw ${JSON.stringify(this.all.map((e) => e.type))}`)), timeoutMs);
      this.waiters.push({
        pred: match,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e as Extract<AgentEvent, { type: T }>);
        },
      });
    });
  }
}
