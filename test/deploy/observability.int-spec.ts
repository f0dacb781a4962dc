import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parser } from '@prometheus-io/lezer-promql';
import { BillingSyncMetrics } from '@spot/billing';
import { loadConfig } from '@spot/config';
import { PipelineLagRepository, PrismaService } from '@spot/db';
import { Client } from 'pg';
import type { Registry } from 'prom-client';
import { parse } from 'yaml';
import { BodyBudget } from '../../apps/gateway/src/http/body-budget';
import { GatewayMetrics } from '../../apps/gateway/src/metrics/gateway-metrics';
import { PipelineMetrics } from '../../apps/worker/src/metrics/pipeline-metrics';
import { WorkerMetricsServer } from '../../apps/worker/src/metrics/worker-metrics.server';
import { freePort } from '../support/free-port';

// deploy/grafana's dashboard and deploy/prometheus's alert rules, read against the metrics the code registers: a
// renamed or removed metric fails here instead of leaving an empty panel or an alert that can never fire.

const root = path.resolve(__dirname, '../..');
const dashboard = JSON.parse(readFileSync(path.join(root, 'deploy/grafana/spotinference-dashboard.json'), 'utf8')) as Dashboard;
const rules = parse(readFileSync(path.join(root, 'deploy/prometheus/alerts.yaml'), 'utf8')) as RuleFile;

/** vLLM's own metrics (scraped from the engines), which the dashboard compares ours with. */
const ENGINE_METRICS = new Set(['vllm:time_to_first_token_seconds_bucket']);

interface Dashboard {
  uid: string;
  panels: Array<{ id: number; type: string; title: string; datasource?: { uid: string }; targets?: Array<{ refId: string; expr: string }> }>;
  templating: { list: Array<{ name: string }> };
}
interface RuleFile {
  groups: Array<{ name: string; rules: Array<{ alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }>;
}

/** Series names a registry exports: histograms as _bucket, _sum and _count. */
async function seriesNames(registry: Registry): Promise<string[]> {
  const metrics = await registry.getMetricsAsJSON();
  return metrics.flatMap((m) => (String(m.type) === 'histogram' ? ['_bucket', '_sum', '_count'].map((s) => m.name + s) : [m.name]));
}

/** Grafana's variables, as Prometheus would see them after interpolation. */
function interpolate(expr: string): string {
  return expr.replaceAll('$__rate_interval', '5m').replaceAll('$__range', '1h').replaceAll('$__interval', '1m').replaceAll('$spot_tiers', '.*spot.*');
}

/** Parses PromQL with Prometheus' own grammar: the metric names it selects, and where it does not parse. */
function promql(expr: string): { metrics: string[]; errors: number[] } {
  const metrics: string[] = [];
  const errors: number[] = [];
  parser.parse(expr).iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
      if (node.name === 'Identifier' && node.node.parent?.name === 'VectorSelector') metrics.push(expr.slice(node.from, node.to));
    },
  });
  return { metrics, errors };
}

let known: Set<string>;

beforeAll(async () => {
  const config = loadConfig({ ...process.env, STRIPE_SECRET_KEY: 'sk_test_names' });
  const gateway = new GatewayMetrics();
  new BodyBudget(config, gateway);
  const noLag = { oldestUnrolledEventAt: () => Promise.resolve(null), oldestUnbilledAt: () => Promise.resolve(null) } as unknown as PipelineLagRepository;
  const names = await Promise.all([gateway.registry, new BillingSyncMetrics().registry, new PipelineMetrics(noLag, config).registry].map(seriesNames));
  known = new Set(names.flat());
});

const exprs: Array<[string, string]> = [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t): [string, string] => [`dashboard "${p.title}" ${t.refId}`, interpolate(t.expr)])),
  ...rules.groups.flatMap((g) => g.rules.map((r): [string, string] => [`alert ${r.alert ?? r.record}`, r.expr])),
];

describe('the Grafana dashboard and the Prometheus alert rules', () => {
  it('are written in PromQL that parses, over metrics the gateway and the worker register', () => {
    expect(exprs.length).toBeGreaterThan(30);
    const problems: string[] = [];
    for (const [where, expr] of exprs) {
      const { metrics, errors } = promql(expr);
      if (expr.trim() === '') problems.push(`${where}: empty expr`);
      if (errors.length > 0) problems.push(`${where}: PromQL does not parse at ${errors[0]}: ${expr}`);
      if (metrics.length === 0) problems.push(`${where}: selects no metric`);
      for (const m of metrics) if (!known.has(m) && !ENGINE_METRICS.has(m)) problems.push(`${where}: ${m} is not a metric of ours`);
    }
    expect(problems).toEqual([]);
  });

  it('cover what the operator watches first, and list names added elsewhere only until they land', () => {
    const used = new Set(exprs.flatMap(([, e]) => promql(e).metrics));
    for (const m of [
      'gateway_requests_total',
      'gateway_time_to_first_byte_seconds_bucket',
      'gateway_tokens_total',
      'gateway_tier_wakes_total',
      'gateway_stream_continuations_total',
      'gateway_usage_events_pending',
      'gateway_usage_events_spooled',
      'usage_rollup_lag_seconds',
      'billing_sync_lag_seconds',
      'billing_sync_failing_orgs',
    ]) {
      expect(used).toContain(m);
    }
    // the parser is no rubber stamp
    expect(promql('sum(rate(gateway_requests_total[5m])').errors.length).toBeGreaterThan(0);
    expect(promql('rate(gateway_requests_total{status=~"5.."}[5m])').metrics).toEqual(['gateway_requests_total']);
  });

  it('the dashboard: unique panel ids, every query on the datasource variable, every variable declared', () => {
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const variables = new Set(dashboard.templating.list.map((v) => v.name));
    for (const p of dashboard.panels.filter((x) => x.type !== 'row')) {
      expect(p.datasource?.uid).toBe('${datasource}');
      expect(p.targets?.length).toBeGreaterThan(0);
      for (const t of p.targets ?? []) {
        for (const [, name] of t.expr.matchAll(/\$(\w+)/g)) if (!name.startsWith('__')) expect(variables).toContain(name);
      }
    }
  });

  it('the rules: alert names unique, a severity, a summary, and durations Prometheus reads', () => {
    const names = rules.groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(new Set(names).size).toBe(names.length);
    for (const g of rules.groups) {
      for (const r of g.rules) {
        expect(r.alert).toMatch(/^[A-Z][A-Za-z]+$/);
        expect(['critical', 'warning', 'info']).toContain(r.labels?.severity);
        expect(r.annotations?.summary).toBeTruthy();
        if (r.for !== undefined) expect(r.for).toMatch(/^\d+[smh]$/);
      }
    }
  });
});

describe("the worker's pipeline lag metrics, over Postgres", () => {
  const config = loadConfig(process.env);
  const prisma = new PrismaService(config);
  const locker = new Client({ connectionString: config.DATABASE_URL });
  const orgId = randomUUID();
  const keyId = randomUUID();
  const requestId = `lag-${randomUUID()}`;
  let server: WorkerMetricsServer;
  let port: number;

  beforeAll(async () => {
    await locker.connect();
    const hourAgo = new Date(Date.now() - 2 * 3600_000);
    await prisma.$executeRaw`
      INSERT INTO orgs (id, slug, name, stripe_customer_id, stripe_subscription_id, stripe_account, billing_since)
      VALUES (${orgId}::uuid, ${`lag-${orgId.slice(0, 8)}`}, 'lag', ${`cus_lag_${orgId}`}, ${`sub_lag_${orgId}`}, ${`acct-lag-${orgId}`}, ${new Date(0)})`;
    await prisma.$executeRaw`
      INSERT INTO usage_events (request_id, created_at, org_id, key_id, model, tier, prompt_tokens, completion_tokens, duration_ms, status)
      VALUES (${requestId}, ${new Date(Date.now() - 600_000)}, ${orgId}::uuid, ${keyId}::uuid, 'm', 'spot', 1, 1, 1, 200)`;
    // a rollup changed two hours ago and never synced (its org's Stripe account is no billing sync's: none picks it up)
    await prisma.$executeRaw`
      INSERT INTO usage_rollups (org_id, key_id, model, tier, hour, requests, prompt_tokens, completion_tokens, cached_tokens, cost_nanos, version, synced_version, updated_at)
      VALUES (${orgId}::uuid, ${keyId}::uuid, 'm', 'spot', ${new Date(Math.floor(hourAgo.getTime() / 3600_000) * 3600_000)}, 1, 1, 1, 0, 1, 1, 0, ${hourAgo})`;
    // held locked, so that no rollup pass of a concurrent test file (FOR UPDATE SKIP LOCKED) rolls it up meanwhile
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM usage_events WHERE request_id = $1 FOR UPDATE', [requestId]);
    port = await freePort();
    const cfg = loadConfig({ ...process.env, WORKER_METRICS_PORT: String(port), WORKER_METRICS_HOST: '127.0.0.1', STRIPE_SECRET_KEY: 'sk_test_lag' });
    server = new WorkerMetricsServer(cfg, new BillingSyncMetrics(), new PipelineMetrics(new PipelineLagRepository(prisma), cfg));
    await server.onApplicationBootstrap();
  });

  afterAll(async () => {
    await server.onModuleDestroy();
    await locker.query('ROLLBACK');
    await locker.end();
    await prisma.$executeRaw`DELETE FROM usage_events WHERE request_id = ${requestId}`;
    await prisma.$executeRaw`DELETE FROM usage_rollups WHERE org_id = ${orgId}::uuid`;
    await prisma.$executeRaw`DELETE FROM orgs WHERE id = ${orgId}::uuid`;
    await prisma.$disconnect();
  });

  function gauge(text: string, name: string): number {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    expect(line).toBeDefined();
    return Number(line!.split(' ')[1]);
  }

  it('serve, beside billing sync, the age of the oldest event not rolled up and of the oldest usage not billed', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain('billing_sync_failing_orgs');
    // at least as old as ours (an older one of another test may be the oldest)
    expect(gauge(text, 'usage_rollup_lag_seconds')).toBeGreaterThanOrEqual(590);
    expect(gauge(text, 'billing_sync_lag_seconds')).toBeGreaterThanOrEqual(2 * 3600 - 10);
  });

  it('billing lag is 0 while billing is off (nothing is owed to a Stripe that is not there)', async () => {
    const off = loadConfig({ ...process.env, STRIPE_SECRET_KEY: '' });
    const metrics = new PipelineMetrics(new PipelineLagRepository(prisma), off);
    const text = await metrics.registry.metrics();
    expect(gauge(text, 'billing_sync_lag_seconds')).toBe(0);
    expect(gauge(text, 'usage_rollup_lag_seconds')).toBeGreaterThanOrEqual(590);
  });
});
