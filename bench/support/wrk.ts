/**
 * wrk (Debian's package) as the load generator of bench:capacity: found on PATH or installed with apt-get when
 * root on Debian/Ubuntu; a Lua script that POSTs one body with headers, checks that every streamed answer is a
 * 200 that ends with `data: [DONE]`, optionally paces requests to a fixed rate, and prints its figures as JSON.
 */
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { aptGetInstall, readOsRelease, whyNoApt } from './apt-get';

/** The path of wrk, installing Debian's package when missing and allowed; throws how to get it otherwise. */
export function ensureWrk(): string {
  const find = () => {
    const r = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' });
    return r.status === 0 ? r.stdout.trim() : null;
  };
  const found = find();
  if (found !== null) return found;
  const why = whyNoApt(process.getuid?.(), readOsRelease());
  const howTo = 'Install wrk (Debian/Ubuntu: `sudo apt-get install wrk`) and run the bench again.';
  if (why !== null) throw new Error(`wrk is missing and not installed automatically (${why}). ${howTo}`);
  process.stderr.write('wrk is missing: installing Debian\'s wrk (apt-get)\n');
  aptGetInstall(['wrk'], { hint: howTo });
  const installed = find();
  if (installed === null) throw new Error(`apt-get installed wrk but it is not on PATH. ${howTo}`);
  return installed;
}

/** A Lua string literal (long brackets cannot be broken out of by JSON or a key). */
const luaString = (s: string) => {
  let eq = '';
  while (s.includes(`]${eq}]`)) eq += '=';
  return `[${eq}[${s}]${eq}]`;
};

export interface WrkScriptOptions {
  body: string;
  headers: Record<string, string>;
  /** Requests per second over all threads; 0 = closed loop (each connection sends as soon as it has an answer). */
  rate: number;
  threads: number;
}

/** Writes the Lua script to `file`. */
export function writeWrkScript(file: string, o: WrkScriptOptions): void {
  const headers = Object.entries(o.headers)
    .map(([k, v]) => `wrk.headers[ ${luaString(k)} ] = ${luaString(v)}`)
    .join('\n');
  // pacing: each thread hands out send times one interval apart (LuaJIT's ffi reads the monotonic clock, as
  // wrk's Lua has no millisecond clock); a backlog older than a second is dropped rather than burst
  const pacing =
    o.rate > 0
      ? `
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = ${(1000 * o.threads) / o.rate}
local next_at = nil
function delay()
  local now = now_ms()
  if next_at == nil or next_at < now - 1000 then next_at = now end
  next_at = next_at + interval
  local d = next_at - now
  if d < 0 then return 0 end
  return math.floor(d)
end
`
      : '';
  const lua = `wrk.method = "POST"
wrk.body = ${luaString(o.body)}
${headers}
${pacing}
good = 0
bad = 0
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
local done_marker = "data: [DONE]\\n\\n"
function response(status, headers, body)
  if status == 200 and body:sub(-#done_marker) == done_marker then good = good + 1 else bad = bad + 1 end
end
function done(summary, latency, requests)
  local g, b = 0, 0
  for _, t in ipairs(threads) do
    g = g + t:get("good")
    b = b + t:get("bad")
  end
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests":%d,"durationUs":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"good":%d,"bad":%d,"latencyP50Us":%d,"latencyP99Us":%d,"latencyMaxUs":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout, g, b,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`;
  writeFileSync(file, lua);
}

/** What one wrk run reports. */
export interface WrkResult {
  /** Answers completed (any status). */
  requests: number;
  durationUs: number;
  bytes: number;
  /** Socket errors. */
  connect: number;
  read: number;
  write: number;
  timeout: number;
  /** Non-2xx/3xx answers. */
  status: number;
  /** 200s whose stream ended with `data: [DONE]`, and every other answer. */
  good: number;
  bad: number;
  latencyP50Us: number;
  latencyP99Us: number;
  latencyMaxUs: number;
}

/** Runs wrk for `durationS` against `url` with the script; resolves with its figures. */
export function runWrk(wrk: string, o: { url: string; script: string; connections: number; threads: number; durationS: number }): Promise<WrkResult> {
  const args = ['-t', String(o.threads), '-c', String(o.connections), '-d', `${o.durationS}s`, '--timeout', '10s', '-s', o.script, o.url];
  return new Promise((resolve, reject) => {
    const child = spawn(wrk, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (code !== 0 || line === undefined) {
        reject(new Error(`wrk ${args.join(' ')} failed (exit code ${code}):\n${out}${err}`));
        return;
      }
      resolve(JSON.parse(line.slice('WRK_JSON '.length)) as WrkResult);
    });
  });
}
