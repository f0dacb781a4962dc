import cluster from 'node:cluster';
import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ClusterMetricsClient } from './cluster-metrics';

/** The usage recorder's counters the gauges show. */
export interface RecorderStats {
  pending: number;
  spooledEvents: number;
  written: number;
  failures: number;
}

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** The gateway's Prometheus registry. Children are cached per label set so the hot path only increments. */
@Injectable()
export class GatewayMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'status'> = new Counter({
    name: 'gateway_requests_total',
    help: 'Requests answered, by route and HTTP status',
    labelNames: ['route', 'status'] as const,
    registers: [this.registry],
    collect: (): void => this.flushRequestCounts(),
  });
  readonly duration = new Histogram({
    name: 'gateway_request_duration_seconds',
    help: 'Time from request received to last byte sent, by route',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly ttfb = new Histogram({
    name: 'gateway_time_to_first_byte_seconds',
    help: 'Time from request received to the first body byte relayed from the engine, by route',
    labelNames: ['route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly upstreamErrors = new Counter({
    name: 'gateway_upstream_errors_total',
    help: 'Engine failures, by tier and kind (connect, status, midstream, timeout)',
    labelNames: ['tier', 'kind'] as const,
    registers: [this.registry],
  });
  readonly ejections = new Counter({
    name: 'gateway_endpoint_ejections_total',
    help: 'Engine endpoints taken out of rotation (circuit opened), by tier and replica (index in the tier\'s endpoints)',
    labelNames: ['tier', 'replica'] as const,
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'gateway_upstream_retries_total',
    help: 'Attempts moved to another replica or tier before any byte reached the client, by the tier that failed',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly responsesStored = new Counter({
    name: 'gateway_responses_stored_total',
    help: 'Responses kept for previous_response_id and retrieval (store: true), by outcome: stored, failed (the write failed), too_large (body over 1 MiB)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly poison = new Counter({
    name: 'gateway_poison_requests_total',
    help: 'Request bodies that failed engines after being sent to them: struck (one failure), detected (refused from now on), refused (answered 502 without touching an engine)',
    labelNames: ['event'] as const,
    registers: [this.registry],
  });
  readonly streamContinuations = new Counter({
    name: 'gateway_stream_continuations_total',
    help: 'Streams whose engine was lost after bytes reached the client, by the tier lost and outcome: continued (on another engine), closed (nothing was left to generate: the gateway ended it), no_engine, exhausted (STREAM_CONTINUATIONS), unsupported (tool call, n > 1, logprobs), poisoned, cut',
    labelNames: ['tier', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly tierWakes = new Counter({
    name: 'gateway_tier_wakes_total',
    help: 'Wakes of sleeping tiers seen by this gateway, by tier and outcome (awake, deadline, error)',
    labelNames: ['tier', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly tierWakeSeconds = new Histogram({
    name: 'gateway_tier_wake_seconds',
    help: 'How long the wakes this gateway ran took, by tier',
    labelNames: ['tier'] as const,
    buckets: [0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly tierState = new Gauge({
    name: 'gateway_tier_state',
    help: 'State of a tier that may sleep, as this gateway sees it: 1 awake, 0.5 waking, 0 asleep',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly preemptionNotices = new Counter({
    name: 'gateway_preemption_notices_total',
    help: 'Preemption notices this gateway learnt, by tier and how: admin (its admin route), poll (the replica\'s notice URL), shared (taken by another process: a gateway or the CLI)',
    labelNames: ['tier', 'via'] as const,
    registers: [this.registry],
  });
  readonly noticedReplicas = new Gauge({
    name: 'gateway_noticed_replicas',
    help: 'Replicas under a preemption notice (before or past its deadline) as this gateway sees them, by tier; they take no new requests',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly noticeWakes = new Counter({
    name: 'gateway_notice_wakes_total',
    help: 'Wakes of sleeping tiers this gateway started because a preemption notice left another tier without replicas, by the tier woken',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly noticeDeadlines = new Counter({
    name: 'gateway_preemption_deadlines_total',
    help: 'Preemption notice deadlines reached (the replica counts as gone from then on), by tier',
    labelNames: ['tier'] as const,
    registers: [this.registry],
  });
  readonly tokens: Counter<'model' | 'tier' | 'direction'> = new Counter({
    name: 'gateway_tokens_total',
    help: 'Tokens billed, by model, tier and direction',
    labelNames: ['model', 'tier', 'direction'] as const,
    registers: [this.registry],
    collect: (): void => this.flushTokenCounts(),
  });
  readonly keyLookups = new Counter({
    name: 'gateway_key_lookups_total',
    help: 'API key lookups that went to Postgres (concurrent misses of one key share a lookup)',
    registers: [this.registry],
  });
  readonly limiterErrors = new Counter({
    name: 'gateway_rate_limiter_errors_total',
    help: 'Limiter commands that Redis did not answer in time (limits failed open, budgets were decided locally)',
    registers: [this.registry],
  });
  readonly redisUp = new Gauge({
    name: 'gateway_redis_up',
    help: 'Whether Redis answers this gateway (1) or not (0: commands time out or the connection is down)',
    registers: [this.registry],
  });
  readonly budgetLocal = new Counter({
    name: 'gateway_budget_local_decisions_total',
    help: 'Budget checks decided from this gateway\'s own view because Redis did not answer, by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly inflight = new Gauge({
    name: 'gateway_inflight_requests',
    help: 'Requests being proxied now',
    registers: [this.registry],
  });

  readonly usagePending: Gauge = new Gauge({
    name: 'gateway_usage_events_pending',
    help: 'Usage events held in memory, not yet in Postgres',
    registers: [this.registry],
    collect: (): void => this.usagePending.set(this.recorderStats().pending),
  });
  readonly usageSpooled: Gauge = new Gauge({
    name: 'gateway_usage_events_spooled',
    help: 'Usage events spilled to the disk spool, not yet in Postgres',
    registers: [this.registry],
    collect: (): void => this.usageSpooled.set(this.recorderStats().spooledEvents),
  });
  readonly usageWritten: Gauge = new Gauge({
    name: 'gateway_usage_events_written',
    help: 'Usage events this process has written to Postgres',
    registers: [this.registry],
    collect: (): void => this.usageWritten.set(this.recorderStats().written),
  });
  readonly usageFailures: Gauge = new Gauge({
    name: 'gateway_usage_flush_failures',
    help: 'Failed usage flushes (retried; nothing is dropped)',
    registers: [this.registry],
    collect: (): void => this.usageFailures.set(this.recorderStats().failures),
  });

  /**
   * The two per-request counters are counted here, in plain numbers, and added to prom-client's counters when they
   * are collected: prom-client hashes the label set on every inc(), even on a child it handed out.
   */
  private readonly requestCounts = new Map<string, Map<number, RequestCount>>();
  private readonly tokenCounts = new Map<string, Map<string, TokenCount>>();

  private recorderStats: () => RecorderStats = () => ({ pending: 0, spooledEvents: 0, written: 0, failures: 0 });
  private readonly cluster: ClusterMetricsClient | null;

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'gateway_' });
    this.cluster = cluster.isWorker ? new ClusterMetricsClient(this.registry) : null;
  }

  /** Where the usage gauges read the recorder's counters, at collection time (each worker's, in a cluster). */
  observeRecorder(stats: () => RecorderStats): void {
    this.recorderStats = stats;
  }

  /**
   * The Prometheus text of this process, or, in a worker of a multi-process gateway, of every worker (merged by the
   * primary, each series labelled with its worker), so that a scrape that lands on any worker sees them all.
   */
  text(): Promise<string> {
    return this.cluster === null ? this.registry.metrics() : this.cluster.text();
  }

  /** The duration and time-to-first-byte histograms of a route, labelled once. */
  routeTimers(route: string): { duration: ReturnType<Histogram<'route'>['labels']>; ttfb: ReturnType<Histogram<'route'>['labels']> } {
    return { duration: this.duration.labels(route), ttfb: this.ttfb.labels(route) };
  }

  /** Counts billed tokens (added to gateway_tokens_total when it is collected). */
  countTokens(model: string, tier: string, input: number, output: number): void {
    let byTier = this.tokenCounts.get(model);
    if (byTier === undefined) {
      byTier = new Map();
      this.tokenCounts.set(model, byTier);
    }
    let count = byTier.get(tier);
    if (count === undefined) {
      count = { model, tier, input: 0, output: 0 };
      byTier.set(tier, count);
    }
    count.input += input;
    count.output += output;
  }

  /** Counts an answered request (added to gateway_requests_total when it is collected). */
  countRequest(route: string, status: number): void {
    let byStatus = this.requestCounts.get(route);
    if (byStatus === undefined) {
      byStatus = new Map();
      this.requestCounts.set(route, byStatus);
    }
    let count = byStatus.get(status);
    if (count === undefined) {
      count = { route, status: String(status), n: 0, child: this.requests.labels(route, String(status)) };
      byStatus.set(status, count);
    }
    count.n++;
  }

  private flushRequestCounts(): void {
    for (const byStatus of this.requestCounts.values()) {
      for (const count of byStatus.values()) {
        if (count.n === 0) continue;
        count.child.inc(count.n);
        count.n = 0;
      }
    }
  }

  private flushTokenCounts(): void {
    for (const byTier of this.tokenCounts.values()) {
      for (const count of byTier.values()) {
        if (count.input > 0) this.tokens.labels(count.model, count.tier, 'input').inc(count.input);
        if (count.output > 0) this.tokens.labels(count.model, count.tier, 'output').inc(count.output);
        count.input = 0;
        count.output = 0;
      }
    }
  }
}

interface RequestCount {
  readonly route: string;
  readonly status: string;
  n: number;
  /** Created at the first count, so that a status seen once is exported (0 before its first collection). */
  readonly child: ReturnType<Counter<'route' | 'status'>['labels']>;
}

interface TokenCount {
  readonly model: string;
  readonly tier: string;
  input: number;
  output: number;
}
