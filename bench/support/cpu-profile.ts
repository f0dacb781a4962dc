/**
 * Reads V8 CPU profiles (`node --cpu-prof` writes one `.cpuprofile` JSON per process) and says where the CPU
 * went: self time per function, and per component of the gateway (Nest/Fastify, our fast path, auth, limiter,
 * exchange relay, undici, usage recorder, prom-client, pg, ioredis, GC...). A sample is charged to the first
 * frame up its stack that belongs to a component: natives (JSON.stringify, writev) and Node's own modules are
 * charged to whoever called them, so `JSON.stringify` inside the journal write counts as the journal write.
 * Only samples inside the given time windows count (hrtime microseconds, the clock V8 stamps samples with), and
 * idle samples never do: the figures are shares of the CPU the process used while it was measured.
 */
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** A time window in microseconds of the monotonic clock (`process.hrtime.bigint() / 1000n`). */
export interface ProfileWindow {
  fromUs: number;
  toUs: number;
}

export interface ProfileSummary {
  /** Profiles read (one per process: a multi-process gateway writes one per worker, plus its primary). */
  files: number;
  /** Non-idle sampled time inside the windows, in ms. */
  busyMs: number;
  /** Idle sampled time inside the windows, in ms. */
  idleMs: number;
  /** Busy time by component (charged as described above), largest first. */
  components: Array<{ name: string; ms: number; share: number }>;
  /** Self time of single functions (their own frames, natives included), largest first. */
  functions: Array<{ name: string; where: string; ms: number; share: number }>;
}

const PACKAGE_COMPONENTS: Array<[RegExp, string]> = [
  [/\/node_modules\/(@nestjs|fastify|@fastify|avvio|find-my-way|light-my-request|fast-json-stringify|rxjs|reflect-metadata)\//, 'Nest / Fastify'],
  [/\/node_modules\/undici\//, 'undici client'],
  [/\/node_modules\/(prom-client|tdigest|bintrees)\//, 'prom-client'],
  [/\/node_modules\/(ioredis|@ioredis|redis-parser|redis-errors|standard-as-callback|cluster-key-slot|denque)\//, 'ioredis'],
  [/\/node_modules\/(pg|pg-protocol|pg-types|pg-pool|pg-int8|postgres-[a-z]+)\//, 'Postgres client (pg)'],
  [/\/node_modules\/@prisma\/|\/libs\/db\/src\/generated\//, 'Prisma (client + adapter-pg)'],
  [/\/node_modules\/lru-cache\//, 'auth (key cache, api-key auth)'],
];

const PROJECT_COMPONENTS: Array<[RegExp, string]> = [
  [/\/apps\/gateway\/src\/proxy\/(fast-path|v1-routes|request-id)\.js$/, 'fast path (fast-path, v1-routes)'],
  [/\/apps\/gateway\/src\/proxy\/(proxy\.service|openai-request|models\.service)\.js$/, 'proxy service + request check'],
  [/\/apps\/gateway\/src\/proxy\/(proxy-exchange|sse-frames|token-usage)\.js$/, 'exchange relay (proxy-exchange, sse-frames)'],
  [/\/apps\/gateway\/src\/auth\//, 'auth (key cache, api-key auth)'],
  [/\/apps\/gateway\/src\/limits\//, 'rate limiter'],
  [/\/apps\/gateway\/src\/metrics\//, 'gateway metrics (our wrappers)'],
  [/\/apps\/gateway\/src\/routing\//, 'routing (pool, waker, poison)'],
  [/\/apps\/gateway\/src\/(main|gateway-app|app\.module)\.js$/, 'gateway boot (main, gateway-app)'],
  [/\/apps\/gateway\/src\//, 'gateway, other'],
  [/\/libs\/db\/src\/usage-events\.repository\.js$/, 'usage: batch insert serialisation (repository)'],
  [/\/libs\/usage\/src\/usage-event\.js$/, 'usage: validate (toUsageRow)'],
  [/\/libs\/usage\/src\/usage-spool\.js$/, 'usage: spool'],
  [/\/libs\/keys\//, 'auth (key cache, api-key auth)'],
  [/\/libs\/tiers\//, 'tiers (pricing, catalog)'],
  [/\/libs\/contract\//, 'contract (errors)'],
  [/\/libs\//, 'libs, other'],
  [/\/bench\/support\//, 'bench probe'],
  [/\/bench\/naive-proxy\.js$/, 'bare proxy (its own code)'],
];

/** The usage recorder's functions, by what they do. */
function recorderComponent(fn: string): string {
  if (fn === 'journal' || fn === 'touchJournal' || fn === 'rotateJournal' || fn === 'dropSealed') return 'usage: journal write';
  if (fn === 'record') return 'usage: record';
  if (fn === 'validate') return 'usage: validate (toUsageRow)';
  return 'usage: flush / pump';
}

/** The component a frame belongs to, or null for frames charged to their caller (natives, Node's own modules). */
export function componentOf(frame: CallFrame): string | null {
  const { url, functionName } = frame;
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(program)') return 'V8 / native (program)';
    if (functionName === '(idle)') return '(idle)';
    return null;
  }
  // Node's own modules, and WebAssembly (undici's llhttp, Prisma's query compiler): charged to their caller
  if (url.startsWith('node:') || url.startsWith('wasm://')) return null;
  if (/\/libs\/usage\/src\/usage-recorder\.js$/.test(url)) return recorderComponent(functionName);
  for (const [re, name] of PROJECT_COMPONENTS) if (re.test(url) && !url.includes('/node_modules/')) return name;
  for (const [re, name] of PACKAGE_COMPONENTS) if (re.test(url)) return name;
  if (url.includes('/node_modules/')) {
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    return `package ${m?.[1] ?? '?'}`;
  }
  return 'other';
}

/** Node's own modules, for samples with no component above them (the HTTP parser, timers, sockets). */
export function coreComponent(frame: CallFrame): string {
  const m = /^node:(?:internal\/)?([a-z_]+)/.exec(frame.url);
  const mod = m?.[1] ?? 'native';
  if (/^_?http|^http/.test(mod)) return 'Node core: http server/client';
  if (mod === 'net' || mod === 'stream_base_commons' || mod === 'streams' || mod === 'stream') return 'Node core: sockets, streams';
  if (mod === 'timers' || mod === 'process') return 'Node core: timers, ticks';
  return `Node core: ${mod}`;
}

function where(frame: CallFrame): string {
  if (frame.url === '') return '(native)';
  const m = /\/(node_modules\/(?:@[^/]+\/)?[^/]+|dist\/.*)$/.exec(frame.url);
  const file = m ? m[1].replace(/^dist\//, '') : frame.url.replace(/^file:\/\//, '');
  return `${file}:${frame.lineNumber + 1}`;
}

/** Every `.cpuprofile` in `dir`, summed over the windows. */
export function summarizeProfiles(dir: string, windows: readonly ProfileWindow[], top = 25): ProfileSummary {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  const byComponent = new Map<string, number>();
  const byFunction = new Map<string, { name: string; where: string; us: number }>();
  let busyUs = 0;
  let idleUs = 0;
  for (const file of files) {
    const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
    const nodes = new Map<number, ProfileNode>();
    const parent = new Map<number, number>();
    for (const n of profile.nodes) {
      nodes.set(n.id, n);
      for (const c of n.children ?? []) parent.set(c, n.id);
    }
    const charged = new Map<number, string>();
    const chargeOf = (id: number): string => {
      const known = charged.get(id);
      if (known !== undefined) return known;
      const leaf = nodes.get(id)!.callFrame;
      let name: string | null = null;
      for (let at: number | undefined = id; at !== undefined && name === null; at = parent.get(at)) name = componentOf(nodes.get(at)!.callFrame);
      // nothing of ours or a package's above it: Node's own work (the HTTP parser, timers), named by the leaf's module
      name ??= coreComponent(leaf);
      charged.set(id, name);
      return name;
    };
    let t = profile.startTime;
    for (let i = 0; i < profile.samples.length; i++) {
      t += profile.timeDeltas[i];
      // a sample's delta is the time since the previous sample: what this sample stands for
      const dt = profile.timeDeltas[i + 1] ?? 0;
      if (dt <= 0 || !windows.some((w) => t >= w.fromUs && t < w.toUs)) continue;
      const id = profile.samples[i];
      const component = chargeOf(id);
      if (component === '(idle)') {
        idleUs += dt;
        continue;
      }
      busyUs += dt;
      byComponent.set(component, (byComponent.get(component) ?? 0) + dt);
      const frame = nodes.get(id)!.callFrame;
      const key = `${frame.functionName}\u0000${frame.url}\u0000${frame.lineNumber}`;
      const entry = byFunction.get(key) ?? { name: frame.functionName || '(anonymous)', where: where(frame), us: 0 };
      entry.us += dt;
      byFunction.set(key, entry);
    }
  }
  const share = (us: number) => (busyUs > 0 ? us / busyUs : 0);
  return {
    files: files.length,
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    components: [...byComponent].map(([name, us]) => ({ name, ms: us / 1000, share: share(us) })).sort((a, b) => b.ms - a.ms),
    functions: [...byFunction.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map((f) => ({ name: f.name, where: f.where, ms: f.us / 1000, share: share(f.us) })),
  };
}

/** The summary as text tables. */
export function formatProfileSummary(title: string, s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`.padStart(6);
  const lines = [
    `${title}: ${s.files} profile(s), ${(s.busyMs / 1000).toFixed(1)} s busy, ${(s.idleMs / 1000).toFixed(1)} s idle inside the measured runs`,
    '  component (samples charged to the first of our or a package\'s frames up the stack)      ms  share',
  ];
  for (const c of s.components) lines.push(`  ${c.name.padEnd(80)} ${c.ms.toFixed(0).padStart(7)} ${pct(c.share)}`);
  lines.push('  top self time (own frame)');
  for (const f of s.functions) lines.push(`  ${`${f.name}  ${f.where}`.slice(0, 80).padEnd(80)} ${f.ms.toFixed(0).padStart(7)} ${pct(f.share)}`);
  return lines.join('\n');
}
