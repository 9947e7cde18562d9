// services/coordinator/src/telemetry.ts against in-memory exporters and a loopback OTLP collector: one trace
// per migration with a phase span per phase under the root, ERROR status on failure outcomes, gauges that
// follow progress (transfer rate from bytesSent deltas) and vanish at end, the downtime histogram, the
// per-phase counter; and the coordinator's otlpEndpoint option.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SpanStatusCode } from '@opentelemetry/api';
import { DataPointType, MetricReader, type DataPoint, type Histogram, type MetricData } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { compileCoordinatorOptions } from '../../services/coordinator/src/index.ts';
// The coordinator room's index does not export telemetry (yet); this unit test reaches the module itself.
// eslint-disable-next-line no-restricted-imports
import { gaugeDeltaTemporality, initTelemetry, resolveOtlpEndpoint, type Telemetry } from '../../services/coordinator/src/telemetry.ts';

/** A pull reader: the test calls collect() when it wants a snapshot. */
class PullReader extends MetricReader {
  constructor() { super({ aggregationTemporalitySelector: gaugeDeltaTemporality }); }

  protected override onForceFlush(): Promise<void> { return Promise.resolve(); }
  protected override onShutdown(): Promise<void> { return Promise.resolve(); }
}

let spans: InMemorySpanExporter;
let reader: PullReader;
let clock: number;
let tel: Telemetry;

beforeEach(() => {
  spans = new InMemorySpanExporter();
  reader = new PullReader();
  clock = 1000;
  tel = initTelemetry({ otlpEndpoint: null, spanExporter: spans, metricReader: reader, now: () => clock });
});
afterEach(async () => { await tel.shutdown(); });

async function metric(name: string): Promise<MetricData | undefined> {
  const { resourceMetrics } = await reader.collect();
  return resourceMetrics.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
}

/** Gauge value per migration id. */
async function gauge(name: string): Promise<Record<string, number>> {
  const m = await metric(name);
  return Object.fromEntries((m?.dataPoints ?? []).map((p) => [String(p.attributes['phos.migration.id']), p.value as number]));
}

/** Counter value per phase. */
async function phaseCounts(): Promise<Record<string, number>> {
  const m = await metric('phos_migration_phase_total');
  return Object.fromEntries((m?.dataPoints ?? []).map((p) => [String(p.attributes.phase), p.value as number]));
}

/** An OTel [seconds, nanoseconds] time as one comparable number. */
const ns = ([sec, nsec]: readonly [number, number]): bigint => BigInt(sec) * 1_000_000_000n + BigInt(nsec);

const byName = (name: string): ReadableSpan => {
  const s = spans.getFinishedSpans().filter((x) => x.name === name);
  expect(s, name).toHaveLength(1);
  return s[0]!;
};

describe('migration traces', () => {
  it('puts every phase span of one migration in one trace, as children of the root', async () => {
    const m = tel.migration('mig-1', { pid: 4242, from: 'node-a', to: 'node-b' });
    for (const p of ['preparing-target', 'pre-copy', 'cutover', 'restoring']) m.phase(p);
    await m.end('succeeded', 87.5);

    const finished = spans.getFinishedSpans();
    expect(finished.map((s) => s.name)).toEqual(['pending', 'preparing-target', 'pre-copy', 'cutover', 'restoring', 'migration']);
    const root = byName('migration');
    expect(root.parentSpanContext).toBeUndefined();
    expect(root.attributes).toMatchObject({
      'phos.migration.id': 'mig-1', 'phos.migration.pid': 4242, 'phos.migration.from': 'node-a', 'phos.migration.to': 'node-b',
      'phos.migration.outcome': 'succeeded', 'phos.migration.downtime_ms': 87.5,
    });
    expect(root.status.code).toBe(SpanStatusCode.OK);
    const traceId = root.spanContext().traceId;
    expect(m.traceId).toBe(traceId);
    for (const s of finished.filter((x) => x !== root)) {
      expect(s.spanContext().traceId).toBe(traceId);
      expect(s.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
      expect(s.attributes).toEqual({ 'phos.migration.id': 'mig-1', 'phos.migration.phase': s.name });
      expect(s.status.code).toBe(SpanStatusCode.UNSET);
    }
    // Phases abut (each starts when its predecessor ends) and tile the root exactly.
    const phases = finished.filter((x) => x !== root);
    for (let i = 1; i < phases.length; i++) expect(ns(phases[i]!.startTime)).toBe(ns(phases[i - 1]!.endTime));
    expect(ns(phases[0]!.startTime)).toBe(ns(root.startTime));
    expect(ns(phases.at(-1)!.endTime)).toBe(ns(root.endTime));
    expect(ns(root.endTime)).toBeGreaterThan(ns(root.startTime));
  });

  it('gives two migrations two traces', async () => {
    const a = tel.migration('mig-a', { pid: 1, from: 'n1', to: 'n2' });
    const b = tel.migration('mig-b', { pid: 2, from: 'n1', to: 'n3' });
    await Promise.all([a.end('cancelled', null), b.end('cancelled', null)]);
    const roots = spans.getFinishedSpans().filter((s) => s.name === 'migration');
    expect(new Set(roots.map((s) => s.spanContext().traceId)).size).toBe(2);
    // A cancel is not an error, nor a success.
    for (const r of roots) expect(r.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('marks the failing phase and the root ERROR on rolled-back, with the message and code', async () => {
    const m = tel.migration('mig-2', { pid: 7, from: 'a', to: 'b' });
    m.phase('preparing-target');
    m.phase('pre-copy');
    await m.end('rolled-back', null, { code: 'TIMEOUT', message: 'target b did not answer in 10000 ms' });
    const root = byName('migration');
    expect(root.status).toEqual({ code: SpanStatusCode.ERROR, message: 'target b did not answer in 10000 ms' });
    expect(root.attributes).toMatchObject({ 'phos.migration.outcome': 'rolled-back', 'phos.error.code': 'TIMEOUT' });
    expect(root.attributes['phos.migration.downtime_ms']).toBeUndefined();
    expect(byName('pre-copy').status.code).toBe(SpanStatusCode.ERROR);
    expect(byName('preparing-target').status.code).toBe(SpanStatusCode.UNSET);
  });

  it('ignores calls after end', async () => {
    const m = tel.migration('mig-3', { pid: 7, from: 'a', to: 'b' });
    await m.end('failed', null, { code: 'INTERNAL', message: 'boom' });
    m.phase('restoring');
    m.progress({ bytesTotal: 1, bytesSent: 1, bytesRemaining: 0, dirtyBytesPerSec: 0 });
    await m.end('succeeded', 5);
    expect(spans.getFinishedSpans().map((s) => s.name)).toEqual(['pending', 'migration']);
    expect(byName('migration').status.code).toBe(SpanStatusCode.ERROR);
    expect(await phaseCounts()).toEqual({ pending: 1, failed: 1 });
  });
});

describe('migration metrics', () => {
  it('reports progress gauges per migration, with the transfer rate from bytesSent deltas', async () => {
    const m = tel.migration('mig-g', { pid: 1, from: 'a', to: 'b' });
    const other = tel.migration('mig-h', { pid: 2, from: 'a', to: 'c' });
    clock += 2000;
    m.progress({ bytesTotal: 8e9, bytesSent: 2e9, bytesRemaining: 6e9, dirtyBytesPerSec: 5e7 });
    expect(await gauge('phos_migration_data_total_bytes')).toEqual({ 'mig-g': 8e9, 'mig-h': 0 });
    expect(await gauge('phos_migration_data_processed_bytes')).toEqual({ 'mig-g': 2e9, 'mig-h': 0 });
    expect(await gauge('phos_migration_data_remaining_bytes')).toEqual({ 'mig-g': 6e9, 'mig-h': 0 });
    expect(await gauge('phos_migration_dirty_rate_bytes_per_second')).toEqual({ 'mig-g': 5e7, 'mig-h': 0 });
    // 2e9 B since the migration began 2 s ago.
    expect((await gauge('phos_migration_transfer_rate_bytes_per_second'))['mig-g']).toBe(1e9);

    clock += 500;
    m.progress({ bytesTotal: 8e9, bytesSent: 3e9, bytesRemaining: 5e9, dirtyBytesPerSec: 4e7 });
    expect((await gauge('phos_migration_transfer_rate_bytes_per_second'))['mig-g']).toBe(2e9);
    // A same-instant report keeps the rate; its bytes count towards the next interval.
    m.progress({ bytesTotal: 8e9, bytesSent: 3.5e9, bytesRemaining: 4.5e9, dirtyBytesPerSec: 4e7 });
    expect((await gauge('phos_migration_transfer_rate_bytes_per_second'))['mig-g']).toBe(2e9);
    expect((await gauge('phos_migration_data_processed_bytes'))['mig-g']).toBe(3.5e9);
    clock += 1000;
    m.progress({ bytesTotal: 8e9, bytesSent: 4e9, bytesRemaining: 4e9, dirtyBytesPerSec: 4e7 });
    expect((await gauge('phos_migration_transfer_rate_bytes_per_second'))['mig-g']).toBe(1e9);

    await m.end('succeeded', 120);
    // The ended migration's series are gone; the running one stays.
    for (const name of ['phos_migration_data_total_bytes', 'phos_migration_transfer_rate_bytes_per_second']) {
      expect(Object.keys(await gauge(name))).toEqual(['mig-h']);
    }
    await other.end('cancelled', null);
    expect(await gauge('phos_migration_data_remaining_bytes')).toEqual({});
  });

  it('records downtime only when known, and counts every phase and outcome', async () => {
    const ok1 = tel.migration('m1', { pid: 1, from: 'a', to: 'b' });
    const ok2 = tel.migration('m2', { pid: 2, from: 'a', to: 'b' });
    const bad = tel.migration('m3', { pid: 3, from: 'a', to: 'b' });
    for (const m of [ok1, ok2, bad]) m.phase('preparing-target');
    for (const m of [ok1, ok2]) { m.phase('pre-copy'); m.phase('cutover'); m.phase('restoring'); }
    await ok1.end('succeeded', 40);
    await ok2.end('succeeded', 3000);
    await bad.end('rolled-back', null, { code: 'NOT_FOUND', message: 'no GPU' });

    const h = await metric('phos_migration_downtime_ms');
    expect(h?.dataPointType).toBe(DataPointType.HISTOGRAM);
    expect(h?.descriptor.unit).toBe('ms');
    const points = (h?.dataPoints ?? []) as DataPoint<Histogram>[];
    expect(points).toHaveLength(1);
    expect(points[0]!.attributes).toEqual({ outcome: 'succeeded' });
    expect(points[0]!.value.count).toBe(2);
    expect(points[0]!.value.sum).toBe(3040);
    expect(points[0]!.value.min).toBe(40);
    expect(points[0]!.value.max).toBe(3000);

    expect(await phaseCounts()).toEqual({
      pending: 3, 'preparing-target': 3, 'pre-copy': 2, cutover: 2, restoring: 2, succeeded: 2, 'rolled-back': 1,
    });
  });
});

describe('without exporters', () => {
  it('works as a no-op and reports no trace id', async () => {
    const off = initTelemetry({ otlpEndpoint: null });
    const m = off.migration('mig-off', { pid: 1, from: 'a', to: 'b' });
    m.phase('preparing-target');
    m.progress({ bytesTotal: 10, bytesSent: 5, bytesRemaining: 5, dirtyBytesPerSec: 0 });
    expect(m.traceId).toBeUndefined();
    await expect(m.end('failed', null, { code: 'INTERNAL', message: 'x' })).resolves.toBeUndefined();
    await expect(off.shutdown()).resolves.toBeUndefined();
  });

  it('reads the endpoint from PHOS_OTLP_ENDPOINT unless given; null or empty turns it off', () => {
    const saved = process.env.PHOS_OTLP_ENDPOINT;
    try {
      process.env.PHOS_OTLP_ENDPOINT = 'http://collector:4318/';
      expect(resolveOtlpEndpoint(undefined)).toBe('http://collector:4318');
      expect(resolveOtlpEndpoint(null)).toBeNull();
      expect(resolveOtlpEndpoint('')).toBeNull();
      expect(resolveOtlpEndpoint('http://other:4318')).toBe('http://other:4318');
      delete process.env.PHOS_OTLP_ENDPOINT;
      expect(resolveOtlpEndpoint(undefined)).toBeNull();
    } finally {
      if (saved === undefined) delete process.env.PHOS_OTLP_ENDPOINT;
      else process.env.PHOS_OTLP_ENDPOINT = saved;
    }
  });
});

describe('coordinator options', () => {
  it('takes otlpEndpoint from the option, else PHOS_OTLP_ENDPOINT, else null, and rejects a non-URL', () => {
    const saved = process.env.PHOS_OTLP_ENDPOINT;
    try {
      delete process.env.PHOS_OTLP_ENDPOINT;
      expect(compileCoordinatorOptions({}).otlpEndpoint).toBeNull();
      process.env.PHOS_OTLP_ENDPOINT = 'http://env:4318';
      expect(compileCoordinatorOptions({}).otlpEndpoint).toBe('http://env:4318');
      expect(compileCoordinatorOptions({ otlpEndpoint: null }).otlpEndpoint).toBeNull();
      expect(compileCoordinatorOptions({ otlpEndpoint: 'https://opt:4318' }).otlpEndpoint).toBe('https://opt:4318');
      expect(() => compileCoordinatorOptions({ otlpEndpoint: 'collector:4318' })).toThrow(/otlpEndpoint must be an http\(s\) URL/);
    } finally {
      if (saved === undefined) delete process.env.PHOS_OTLP_ENDPOINT;
      else process.env.PHOS_OTLP_ENDPOINT = saved;
    }
  });
});

describe('OTLP/HTTP export', () => {
  /** A stand-in collector on a loopback port: keeps each request's JSON body by path. */
  async function collector(): Promise<{ url: string; bodies: Map<string, unknown[]>; close: () => Promise<void> }> {
    const bodies = new Map<string, unknown[]>();
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const list = bodies.get(req.url ?? '') ?? [];
        list.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown);
        bodies.set(req.url ?? '', list);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    return { url: `http://127.0.0.1:${port}/`, bodies, close: () => new Promise((r) => server.close(() => r())) };
  }

  interface OtlpAttr { key: string; value: { stringValue?: string } }
  interface OtlpMetric { name: string; gauge?: { dataPoints: { attributes: OtlpAttr[]; asDouble?: number; asInt?: string }[] } }
  /** Every (metric name, migration id) pair in one metrics export. */
  function gaugeSeries(body: unknown): string[] {
    const metricsOf = (b: unknown) => (b as { resourceMetrics: { scopeMetrics: { metrics: OtlpMetric[] }[] }[] })
      .resourceMetrics.flatMap((r) => r.scopeMetrics.flatMap((sm) => sm.metrics));
    return metricsOf(body).flatMap((m) => (m.gauge?.dataPoints ?? [])
      .map((p) => `${m.name} ${p.attributes.find((a) => a.key === 'phos.migration.id')?.value.stringValue ?? '-'}`));
  }

  it('sends traces and metrics to <endpoint>/v1/traces and /v1/metrics, and forgets ended migrations', async () => {
    const c = await collector();
    try {
      const t = initTelemetry({ otlpEndpoint: c.url, serviceName: 'phos-test', metricIntervalMs: 60_000 });
      const m = t.migration('mig-otlp', { pid: 9, from: 'a', to: 'b' });
      m.phase('pre-copy');
      m.progress({ bytesTotal: 100, bytesSent: 40, bytesRemaining: 60, dirtyBytesPerSec: 1 });
      // end() flushes while the migration's gauges still exist, so even a short migration is seen once.
      await m.end('succeeded', 12);
      await t.shutdown();

      const metricBodies = c.bodies.get('/v1/metrics') ?? [];
      expect(metricBodies.length).toBeGreaterThanOrEqual(2);
      expect(gaugeSeries(metricBodies[0])).toEqual(expect.arrayContaining([
        'phos_migration_data_total_bytes mig-otlp', 'phos_migration_data_processed_bytes mig-otlp',
        'phos_migration_transfer_rate_bytes_per_second mig-otlp', 'phos_migration_active -',
      ]));
      // The export at shutdown comes after end(): no series of the ended migration is left.
      expect(gaugeSeries(metricBodies.at(-1)).filter((x) => x.endsWith('mig-otlp'))).toEqual([]);

      const traceBodies = (c.bodies.get('/v1/traces') ?? []) as { resourceSpans: { resource: { attributes: OtlpAttr[] }; scopeSpans: { spans: { name: string; traceId: string }[] }[] }[] }[];
      const exported = traceBodies.flatMap((b) => b.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((ss) => ss.spans)));
      expect(exported.map((x) => x.name).sort()).toEqual(['migration', 'pending', 'pre-copy']);
      expect(new Set(exported.map((x) => x.traceId)).size).toBe(1);
      expect(traceBodies[0]!.resourceSpans[0]!.resource.attributes).toContainEqual({ key: 'service.name', value: { stringValue: 'phos-test' } });
    } finally {
      await c.close();
    }
  });
});
