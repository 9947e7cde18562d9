import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  FRAME_SCHEMAS, MESSAGE_SCHEMAS, PROTO_VERSION, PhosError, decodeFrame, decodeMessage, decodeReply, encode,
  encodeFrame, encodeMessage, encodeReply, MANIFEST_SCHEMA, check, type Frame, type Message, type MessageType,
} from '../../../proto/src/index.ts';
import { HEADER_PATH, VECTORS_PATH, renderHeader, renderVectors } from '../../../proto/scripts/gen-cpp.ts';

const v = PROTO_VERSION;

const sampleFrames: Frame[] = [
  { v, t: 'hello', pid: 1234, job: 'j', vaBase: 0x600000000000, vaSize: 2 ** 36, device: 0, stagingBytes: 1 << 26 },
  { v, t: 'welcome', node: 'n1' },
  { v, t: 'alloc', id: 3, va: 0x600000200000, size: 64 << 20 },
  { v, t: 'free', id: 3 },
  { v, t: 'req', id: 9, op: 'hash-round' },
  { v, t: 'req', id: 10, op: 'gate', chunks: [1, 2, 2 ** 40] },
  { v, t: 'rep', id: 9, ok: true },
  { v, t: 'rep', id: 10, ok: false, err: { code: 'TIMEOUT', message: 'x' } },
  { v, t: 'event', kind: 'degraded', message: 'no agent' },
];

const sampleMessages: { [T in MessageType]: Message<T> } = {
  'node-register': { v, node: 'gpu-1', host: 'h', dataAddr: '10.0.0.1:7000', gpus: [{ index: 0, uuid: 'GPU-x', model: 'H200', memBytes: 2 ** 37, freeBytes: 2 ** 36 }], simulated: true, driverVersion: 13000, agentVersion: '0.1.0' },
  heartbeat: { v, node: 'gpu-1', at: Date.now(), processes: 2 },
  'node-record': { v, node: 'gpu-1', host: 'h', dataAddr: '10.0.0.1:7000', gpus: [], simulated: true, driverVersion: 13000, agentVersion: '0.1.0', registeredAt: 1, lastSeen: 2, alive: true },
  'process-record': { v, node: 'gpu-1', pid: 4242, job: 'train', device: 0, gpuBytes: 2 ** 34, startedAt: 3 },
  'migrate-request': { v, pid: 77, from: 'a', to: 'b', bandwidthBytesPerSec: null, maxDowntimeMs: 1000, timeoutMs: 600_000, mode: 'auto' },
  'migrate-accepted': { v, id: 'm-1' },
  'cancel-request': { v, id: 'm-1' },
  'list-request': { v },
  'prepare-target': { v, id: 'm-1', pid: 77, from: 'a', job: 'train', gpuBytes: 2 ** 34, streams: 4 },
  'target-ready': { v, host: '10.0.0.2', port: 40123, streams: 4 },
  'migrate-allocs': { v, id: 'm-1', allocations: [{ id: 1, va: 0x600000000000, size: 2 ** 26, kind: 'slab' }, { id: 2, va: 0, size: 2 ** 21, kind: 'app' }] },
  'migrate-files': { v, id: 'm-1', files: [{ name: 'criu/pages-1.img', size: 4096, alloc: 2 ** 31 }] },
  'files-wanted': { v, allocs: [2 ** 31] },
  'precopy-request': { v, id: 'm-1', pid: 77, to: 'b', host: '10.0.0.2', port: 40123, streams: 4, bandwidthBytesPerSec: 5e9, maxDowntimeMs: 1500, mode: 'auto' },
  'precopy-result': { v, rounds: 3, bytesSent: 2 ** 35, dirtyBytes: 2 ** 22, converged: true },
  'migration-ref': { v, id: 'm-1' },
  'cutover-result': { v, manifest: '{}', finalBytes: 2 ** 22, freezeMs: 12.5 },
  'restore-migrated': { v, id: 'm-1', manifest: '{}' },
  'restore-migrated-result': { v, pid: 77, ms: 800.5 },
  'postcopy-result': { v, chunks: 3, bytes: 6291456, ms: 12.5, demanded: 1 },
  'postcopy-demand': { v, id: 'm-1', chunks: [{ alloc: 2, offset: 4194304 }] },
  'migration-end': { v, id: 'm-1', outcome: 'abort' },
  'migration-progress': { v, id: 'm-1', round: 2, bytesTotal: 2 ** 31, bytesSent: 2 ** 30, bytesRemaining: 2 ** 24, dirtyBytesPerSec: 1e8 },
  'migration-state': { v, id: 'm-1', pid: 77, from: 'a', to: 'b', phase: 'pre-copy', bytesTotal: 10, bytesSent: 5, bytesRemaining: 5, dirtyBytesPerSec: 1.5, startedAt: 1, updatedAt: 2, downtimeMs: null, error: null },
};

describe('proto codec', () => {
  it('round-trips every frame type through msgpack', () => {
    const seen = new Set(sampleFrames.map((f) => f.t));
    expect([...seen].sort()).toEqual(Object.keys(FRAME_SCHEMAS).sort());
    for (const f of sampleFrames) expect(decodeFrame(encodeFrame(f))).toEqual(f);
  });

  it('round-trips every NATS message type through msgpack', () => {
    expect(Object.keys(sampleMessages).sort()).toEqual(Object.keys(MESSAGE_SCHEMAS).sort());
    for (const [type, body] of Object.entries(sampleMessages)) {
      expect(decodeMessage(type as MessageType, encodeMessage(type as MessageType, body as never))).toEqual(body);
    }
    const err = { code: 'NOT_FOUND', message: 'no node b', remedy: 'phos nodes' };
    expect(decodeReply(encodeReply({ v, ok: false, err }))).toEqual({ v, ok: false, err });
  });

  it('writes integers beyond 32 bits as msgpack integers, not floats', () => {
    const bytes = encode({ a: 0x600000000000 });
    expect(bytes.includes(0xcb)).toBe(false); // float64 marker
    expect((decodeFrame(encodeFrame({ v, t: 'alloc', id: 1, va: 2 ** 47 - 2 ** 21, size: 1 })) as Frame<'alloc'>).va).toBe(2 ** 47 - 2 ** 21);
  });

  it('refuses to encode an invalid frame, naming the field', () => {
    expect(() => encodeFrame({ v, t: 'free', id: -1 } as Frame)).toThrow(/frame 'free': \$\.id: expected a non-negative integer/);
  });

  it('rejects malformed packets with a PhosError, never a crash', () => {
    const bad: Uint8Array[] = [
      new Uint8Array(), Uint8Array.of(0xc1), Uint8Array.of(0x81, 0xa1), Uint8Array.of(0xdf, 0xff, 0xff, 0xff, 0xff),
      encode('hello'), encode(null), encode({ t: 'alloc' }), encode({ t: 'nope', v }), encode({ t: 'req', v, id: 1, op: 'explode' }),
    ];
    // And every truncation of every valid frame.
    for (const f of sampleFrames) {
      const b = encodeFrame(f);
      for (let i = 0; i < b.length; i++) bad.push(b.subarray(0, i));
    }
    for (const b of bad) {
      let caught: unknown;
      try { decodeFrame(b); } catch (e) { caught = e; }
      expect(caught, `packet ${Buffer.from(b).toString('hex')}`).toBeInstanceOf(PhosError);
      expect(['BAD_FRAME', 'PROTO_VERSION']).toContain((caught as PhosError).code);
    }
  });

  it('names the version mismatch when a peer speaks a newer protocol', () => {
    expect(() => decodeFrame(encode({ v: v + 1, t: 'free', id: 1 }))).toThrow(expect.objectContaining({ code: 'PROTO_VERSION' }));
  });

  it('validates manifests', () => {
    const m = {
      formatVersion: 1, createdAt: '2026-01-01T00:00:00Z', kind: 'dump', source: { host: 'h', node: 'n', pid: 1, job: 'j' },
      gpu: { model: 'phos-sim', uuid: 'u', driverVersion: 13000, simulated: true }, vaRegion: { base: 0x600000000000, size: 2 ** 30 },
      chunkSize: 2 << 20, allocations: [{ id: 1, va: 0x600000000000, size: 2 << 20 }],
      chunks: [{ alloc: 1, index: 0, hash: '0123456789abcdef', file: 'gpu/0123456789abcdef' }], criu: { version: '4.1.1', dir: 'criu' }, parent: null, sealed: true,
    };
    expect(check(MANIFEST_SCHEMA, m)).toBeNull();
    expect(check(MANIFEST_SCHEMA, { ...m, chunks: [{ ...m.chunks[0], hash: 'XYZ' }] })).toMatch(/\$\.chunks\[0\]\.hash/);
  });
});

describe('proto errors', () => {
  it('survive the wire with code, remedy and details', () => {
    const e = new PhosError('IMAGE_CORRUPT', 'chunk 7 of alloc 2 hash mismatch', { details: { chunk: 7 } });
    const back = PhosError.fromWire(JSON.parse(JSON.stringify(e.toWire())));
    expect(back).toMatchObject({ code: 'IMAGE_CORRUPT', message: e.message, remedy: e.remedy, details: { chunk: 7 } });
    expect(back.exitCode).toBe(7);
    expect(PhosError.fromWire({ code: 'WHAT', message: 'm' })).toMatchObject({ code: 'INTERNAL', details: { peerCode: 'WHAT' } });
  });
});

describe('proto generated native view', () => {
  it('the committed C++ header and test vectors match the TS sources', () => {
    expect(readFileSync(HEADER_PATH, 'utf8'), 'run: npm run gen:proto').toBe(renderHeader());
    expect(readFileSync(VECTORS_PATH, 'utf8'), 'run: npm run gen:proto').toBe(renderVectors());
  });

  it('the shared vectors decode to their recorded values or errors', () => {
    const vec = JSON.parse(readFileSync(VECTORS_PATH, 'utf8')) as { valid: { hex: string; value: unknown }[]; malformed: { hex: string; error: string }[] };
    for (const x of vec.valid) expect(decodeFrame(Buffer.from(x.hex, 'hex'))).toEqual(x.value);
    for (const x of vec.malformed) expect(() => decodeFrame(Buffer.from(x.hex, 'hex'))).toThrow(expect.objectContaining({ code: x.error }));
  });
});
