/** Processes a bench runs: spawning built entry points, waiting for them, and reading their RSS and CPU from /proc. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { LOOP_DELAY_ENV, LOOP_DELAY_PROBE } from './loop-delay';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export interface StartOptions {
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Preload the event-loop probe and open an IPC channel (see loop-delay.ts). */
  probeLoop?: boolean;
  /** Where its stdout and stderr go (default: stdout ignored, stderr to this process's, prefixed with its name). */
  log?: NodeJS.WritableStream;
}

/** Spawns `node <file> <args>`, prefixing what it writes to stderr with its name. */
export function startNode(name: string, file: string, args: string[], env: NodeJS.ProcessEnv, options: StartOptions = {}): ChildProcess {
  const nodeArgs = [...(options.nodeArgs ?? []), ...(options.probeLoop ? ['-r', LOOP_DELAY_PROBE] : [])];
  const child = spawn(process.execPath, [...nodeArgs, file, ...args], {
    env: options.probeLoop ? { ...env, [LOOP_DELAY_ENV]: '1' } : env,
    stdio: ['ignore', options.log === undefined ? 'ignore' : 'pipe', 'pipe', ...(options.probeLoop ? ['ipc' as const] : [])],
  });
  const log = options.log;
  if (log === undefined) child.stderr?.on('data', (d: Buffer) => process.stderr.write(`[${name}] ${d}`));
  else for (const s of [child.stdout, child.stderr]) s?.pipe(log, { end: false });
  return child;
}

/** Waits until `url` answers 2xx. */
export async function waitForUrl(url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  for (;;) {
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${url} did not come up: ${String(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** SIGTERM, then resolves when the process has exited (SIGKILL after `graceMs`). */
export async function stopProcess(child: ChildProcess, graceMs = 30_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** A /proc file, or `null` when its process has just ended. */
function readProc(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return null;
    throw new Error(`cannot read ${file}`, { cause: err });
  }
}

/** The pids of a process and all its descendants (a multi-process gateway's workers), from /proc. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProc(`/proc/${entry}/stat`);
    if (stat === null) continue;
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(entry));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

/** Resident set size of a process and its descendants, in bytes. */
export function treeRss(pid: number): number {
  let kb = 0;
  for (const p of processTree(pid)) {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readProc(`/proc/${p}/status`) ?? '');
    if (m) kb += Number(m[1]);
  }
  return kb * 1024;
}

/** CPU seconds (user + system) a process and its descendants have used so far. */
export function treeCpuSeconds(pid: number): number {
  // clock ticks: 100 per second on Linux (USER_HZ)
  let ticks = 0;
  for (const p of processTree(pid)) {
    const stat = readProc(`/proc/${p}/stat`);
    if (stat === null) continue;
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

/** The `p`th percentile of an ascending array (nearest rank). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Waits until something accepts TCP connections on 127.0.0.1:`port` (for servers without a health route). */
export async function waitForPort(port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
