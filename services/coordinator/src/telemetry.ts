// OpenTelemetry for migrations: one trace per migration (a root span `migration`, one child span per
// phase) and metrics for data moved, rates, downtime and phase counts. Exporters are off unless an OTLP
// endpoint is configured; when off, the same API runs against no-op providers, so callers never branch.
import { SpanStatusCode, context, metrics, trace, type Attributes, type Meter, type Span, type Tracer } from '@opentelemetry/api';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, InstrumentType, MeterProvider, PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, SimpleSpanProcessor, TracerProvider, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace';

/** Migrations last seconds to minutes: a 60 s default interval would miss most of their gauge values. */
export const DEFAULT_METRIC_INTERVAL_MS = 5000;
/** Downtime spans a fast freeze (tens of ms) to a slow CRIU restore (a minute). */
const DOWNTIME_BUCKETS_MS = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];
const SCOPE = 'phos-coordinator';
/**
 * Span times, epoch ms with sub-ms precision. Spans timed by the SDK start at Date.now() (whole ms), so a
 * phase could seem to start before its predecessor ended; one explicit time per phase change makes the
 * phase spans abut exactly.
 */
const epochMs = (): number => performance.timeOrigin + performance.now();
/** Outcomes whose spans carry status ERROR. */
const ERROR_OUTCOMES: readonly string[] = ['failed', 'rolled-back'];

export interface TelemetryOptions {
  /** OTLP/HTTP base URL (e.g. http://collector:4318); /v1/traces and /v1/metrics are appended.
   *  undefined: PHOS_OTLP_ENDPOINT; null or '': no OTLP export. */
  otlpEndpoint?: string | null;
  /** @default 'phos-coordinator' */
  serviceName?: string;
  /** Extra span exporter, exported synchronously per span (tests: InMemorySpanExporter). */
  spanExporter?: SpanExporter;
  /** Extra metric reader (tests: a pull reader whose collect() they call); give it
   *  gaugeDeltaTemporality or it keeps reporting ended migrations' last values. */
  metricReader?: IMetricReader;
  /** @default DEFAULT_METRIC_INTERVAL_MS */
  metricIntervalMs?: number;
  /** Clock in ms for transfer rates; tests pin it. @default performance.now */
  now?: () => number;
}

export interface MigrationAttrs { pid: number; from: string; to: string }
export interface MigrationProgress { bytesTotal: number; bytesSent: number; bytesRemaining: number; dirtyBytesPerSec: number }
export interface MigrationError { code: string; message: string }

/** Last reported values of one running migration; the gauges record these at each collection. */
interface GaugeState extends MigrationProgress { transferBytesPerSec: number; lastSent: number; lastAt: number }

export interface Telemetry {
  /** Starts the migration's trace (root span + a `pending` phase span). */
  migration(id: string, attrs: MigrationAttrs): MigrationTelemetry;
  /** Flushes and stops the exporters; no-op when none is installed. */
  shutdown(): Promise<void>;
}

/** Resolves the endpoint: an explicit null turns OTLP off even when the environment names one. */
export function resolveOtlpEndpoint(v: string | null | undefined): string | null {
  const e = v === undefined ? process.env.PHOS_OTLP_ENDPOINT : v;
  return e ? e.replace(/\/+$/, '') : null;
}

export function initTelemetry(opts: TelemetryOptions = {}): Telemetry {
  const endpoint = resolveOtlpEndpoint(opts.otlpEndpoint);
  const resource = resourceFromAttributes({ 'service.name': opts.serviceName ?? 'phos-coordinator' });
  const tracerProvider = makeTracerProvider(endpoint, opts, resource);
  const meterProvider = makeMeterProvider(endpoint, opts, resource);
  // Without an exporter: the API's global providers, no-ops unless the host process registered an SDK.
  const tracer = tracerProvider?.getTracer(SCOPE) ?? trace.getTracer(SCOPE);
  const meter = meterProvider?.getMeter(SCOPE) ?? metrics.getMeter(SCOPE);
  const inst = new Instruments(meter);
  const flush = async (): Promise<void> => { await meterProvider?.forceFlush(); };
  return {
    migration: (id, attrs) => new MigrationTelemetry(tracer, inst, id, attrs, opts.now ?? (() => performance.now()), flush),
    shutdown: async () => { await Promise.all([tracerProvider?.shutdown(), meterProvider?.shutdown()]); },
  };
}

function makeTracerProvider(endpoint: string | null, o: TelemetryOptions, resource: ReturnType<typeof resourceFromAttributes>): TracerProvider | null {
  const spanProcessors: SpanProcessor[] = [];
  if (endpoint) spanProcessors.push(new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: `${endpoint}/v1/traces` }) }));
  if (o.spanExporter) spanProcessors.push(new SimpleSpanProcessor({ exporter: o.spanExporter }));
  return spanProcessors.length ? new TracerProvider({ resource, spanProcessors }) : null;
}

function makeMeterProvider(endpoint: string | null, o: TelemetryOptions, resource: ReturnType<typeof resourceFromAttributes>): MeterProvider | null {
  const readers: IMetricReader[] = [];
  if (endpoint) {
    readers.push(new PeriodicExportingMetricReader({
      exporter: new PhosOtlpMetricExporter({ url: `${endpoint}/v1/metrics` }),
      exportIntervalMillis: o.metricIntervalMs ?? DEFAULT_METRIC_INTERVAL_MS,
    }));
  }
  if (o.metricReader) readers.push(o.metricReader);
  return readers.length ? new MeterProvider({ resource, readers }) : null;
}

/**
 * Gauges are synchronous and DELTA (see gaugeDeltaTemporality): the SDK then reports only series recorded
 * since the last collection and keeps no per-series memory, so an ended migration's series disappear and
 * thousands of migrations over a coordinator's life never hit the SDK's cardinality limit (observable
 * gauges remember every attribute set forever). The callback of `phos_migration_active` runs at the start
 * of every collection and records each running migration's values just in time.
 */
class Instruments {
  readonly live = new Map<string, GaugeState>();
  readonly phases;
  readonly downtime;

  constructor(meter: Meter) {
    this.phases = meter.createCounter('phos_migration_phase_total', { description: 'Migrations entering each phase (terminal phases are outcomes)' });
    this.downtime = meter.createHistogram('phos_migration_downtime_ms', {
      description: 'Time the application was frozen during a migration', unit: 'ms', advice: { explicitBucketBoundaries: DOWNTIME_BUCKETS_MS },
    });
    const gauge = (name: string, description: string, unit: string) => meter.createGauge(name, { description, unit });
    const g = {
      bytesTotal: gauge('phos_migration_data_total_bytes', 'GPU memory the migration moves', 'By'),
      bytesSent: gauge('phos_migration_data_processed_bytes', 'Bytes sent to the target so far', 'By'),
      bytesRemaining: gauge('phos_migration_data_remaining_bytes', 'Bytes still to send', 'By'),
      dirtyBytesPerSec: gauge('phos_migration_dirty_rate_bytes_per_second', 'Rate the running application dirties memory', 'By/s'),
      transferBytesPerSec: gauge('phos_migration_transfer_rate_bytes_per_second', 'Rate bytes reach the target', 'By/s'),
    } as const;
    meter.createObservableGauge('phos_migration_active', { description: 'Migrations not yet ended' }).addCallback((r) => {
      r.observe(this.live.size);
      for (const [id, s] of this.live) {
        const attrs: Attributes = { 'phos.migration.id': id };
        for (const k of Object.keys(g) as (keyof typeof g)[]) g[k].record(s[k], attrs);
      }
    });
  }
}

/** Temporality for any reader of these metrics: DELTA for synchronous gauges (no temporality on the wire;
 *  it only makes the SDK forget ended migrations), CUMULATIVE for the rest. */
export function gaugeDeltaTemporality(t: InstrumentType): AggregationTemporality {
  return t === InstrumentType.GAUGE ? AggregationTemporality.DELTA : AggregationTemporality.CUMULATIVE;
}

/** The OTLP exporter decides its reader's temporality; this one uses gaugeDeltaTemporality. */
class PhosOtlpMetricExporter extends OTLPMetricExporter {
  override selectAggregationTemporality(t: InstrumentType): AggregationTemporality {
    return gaugeDeltaTemporality(t);
  }
}

/** One migration's trace and metric state. Calls after end() are ignored. */
export class MigrationTelemetry {
  private readonly root: Span;
  /** The trace id, for log lines; undefined when tracing is off. */
  readonly traceId: string | undefined;
  private current: Span | null = null;
  private ended = false;

  constructor(
    private readonly tracer: Tracer,
    private readonly inst: Instruments,
    readonly id: string,
    attrs: MigrationAttrs,
    private readonly now: () => number,
    private readonly flush: () => Promise<void>,
  ) {
    const at = epochMs();
    this.root = tracer.startSpan('migration', { startTime: at, attributes: {
      'phos.migration.id': id, 'phos.migration.pid': attrs.pid, 'phos.migration.from': attrs.from, 'phos.migration.to': attrs.to,
    } });
    this.traceId = this.root.isRecording() ? this.root.spanContext().traceId : undefined;
    inst.live.set(id, { bytesTotal: 0, bytesSent: 0, bytesRemaining: 0, dirtyBytesPerSec: 0, transferBytesPerSec: 0, lastSent: 0, lastAt: now() });
    this.startPhase('pending', at);
  }

  /** Ends the current phase span and starts `next` under the root. Mirror every non-terminal transition. */
  phase(next: string): void {
    if (this.ended) return;
    const at = epochMs();
    this.current?.end(at);
    this.startPhase(next, at);
  }

  private startPhase(name: string, at: number): void {
    this.current = this.tracer.startSpan(name, { startTime: at, attributes: { 'phos.migration.id': this.id, 'phos.migration.phase': name } },
      trace.setSpan(context.active(), this.root));
    this.inst.phases.add(1, { phase: name });
  }

  /** Updates the gauges; the transfer rate is the bytesSent delta since the previous report. */
  progress(p: MigrationProgress): void {
    const s = this.inst.live.get(this.id);
    if (this.ended || !s) return;
    Object.assign(s, { bytesTotal: p.bytesTotal, bytesSent: p.bytesSent, bytesRemaining: p.bytesRemaining, dirtyBytesPerSec: p.dirtyBytesPerSec });
    const t = this.now();
    // A same-instant report carries no rate: keep the previous rate and fold its bytes into the next delta.
    if (t <= s.lastAt) return;
    s.transferBytesPerSec = Math.max(0, p.bytesSent - s.lastSent) / ((t - s.lastAt) / 1000);
    s.lastSent = p.bytesSent;
    s.lastAt = t;
  }

  /**
   * Ends the phase and root spans (ERROR for failed/rolled-back), counts the outcome as a phase, records
   * downtime when known, then flushes metrics once more before dropping this migration's gauge series, so a
   * migration shorter than the export interval is still seen. Never rejects.
   */
  async end(outcome: string, downtimeMs: number | null, error?: MigrationError | null): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.inst.phases.add(1, { phase: outcome });
    if (downtimeMs !== null) this.inst.downtime.record(downtimeMs, { outcome });
    this.closeSpans(outcome, downtimeMs, error ?? null);
    // Export failures must not touch the migration; the OTel diag logger reports them.
    await this.flush().catch(() => undefined);
    this.inst.live.delete(this.id);
  }

  private closeSpans(outcome: string, downtimeMs: number | null, error: MigrationError | null): void {
    const failed = ERROR_OUTCOMES.includes(outcome);
    const message = error?.message ?? outcome;
    const at = epochMs();
    if (failed) this.current?.setStatus({ code: SpanStatusCode.ERROR, message });
    this.current?.end(at);
    this.root.setAttribute('phos.migration.outcome', outcome);
    if (downtimeMs !== null) this.root.setAttribute('phos.migration.downtime_ms', downtimeMs);
    if (error) this.root.setAttribute('phos.error.code', error.code);
    // A cancel is neither a success nor an error: its status stays unset.
    if (failed) this.root.setStatus({ code: SpanStatusCode.ERROR, message });
    else if (outcome === 'succeeded') this.root.setStatus({ code: SpanStatusCode.OK });
    this.root.end(at);
  }
}
