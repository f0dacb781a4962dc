/**
 * Debian's apt-get for test and bench tooling (Chromium for the browser test, wrk for bench:capacity): when
 * we may install (root on Debian or Ubuntu), and an `apt-get` that waits for another apt or dpkg instead of
 * failing. Machine facts and the command runner are injected so the decisions are testable without a machine.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The `ID` and `ID_LIKE` words of an os-release file, lower-cased. */
export function osFamilies(osRelease: string | undefined): string[] {
  if (osRelease === undefined) return [];
  const words: string[] = [];
  for (const line of osRelease.split('\n')) {
    const m = /^(ID|ID_LIKE)=(.*)$/.exec(line.trim());
    if (m) words.push(...m[2].replace(/^["']|["']$/g, '').toLowerCase().split(/\s+/).filter(Boolean));
  }
  return words;
}

/** Why we may not run apt-get here, or `null` when we may (root on Debian or a derivative of it). */
export function whyNoApt(uid: number | undefined, osRelease: string | undefined): string | null {
  if (uid !== 0) return 'that needs root';
  const families = osFamilies(osRelease);
  if (families.includes('debian') || families.includes('ubuntu')) return null;
  return `this is not Debian or Ubuntu (os-release ID/ID_LIKE: ${families.join(' ') || 'unknown'})`;
}

/** The text of /etc/os-release, `undefined` where there is none. */
export function readOsRelease(): string | undefined {
  try {
    return readFileSync('/etc/os-release', 'utf8');
  } catch (err) {
    // no os-release (macOS, Windows, a bare container): not Debian, so no automatic install
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error('cannot read /etc/os-release', { cause: err });
  }
}

/** Runs one command; returns its exit status and what it wrote to stderr (also passed through to ours). */
export type CommandRunner = (command: string, args: string[]) => { status: number | null; stderr: string };

/** Runs a command with stdout passed through and stderr captured (and echoed). */
export const runCommand: CommandRunner = (command, args) => {
  const r = spawnSync(command, args, {
    stdio: ['ignore', 'inherit', 'pipe'],
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.error) throw new Error(`cannot run ${command}`, { cause: r.error });
  process.stderr.write(r.stderr);
  return { status: r.status, stderr: r.stderr };
};

/** Blocks this thread (setup code only: Jest's global setup and bench preparation are synchronous). */
export const sleepSync = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

export interface AptGetOptions {
  run?: CommandRunner;
  sleep?: (ms: number) => void;
  log?: (line: string) => void;
  /** How long to wait, in all, for another apt or dpkg to let go of its lock (default 10 minutes). */
  lockWaitMs?: number;
  /** Appended to the error when apt-get fails: how else to get the package. */
  hint?: string;
}

/**
 * `apt-get update`, then `apt-get install -y --no-install-recommends <packages>`, each waiting for a busy apt
 * (another test run, unattended-upgrades): apt waits for dpkg's lock itself (DPkg::Lock::Timeout); a lock
 * error (the lists lock of `update`) is retried every 5 s until `lockWaitMs` is spent. Throws on any other failure.
 */
export function aptGetInstall(packages: string[], options: AptGetOptions = {}): void {
  const run = options.run ?? runCommand;
  const sleep = options.sleep ?? sleepSync;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const lockWaitMs = options.lockWaitMs ?? 600_000;
  const deadline = Date.now() + lockWaitMs;
  const aptGet = (args: string[]): void => {
    const full = ['-o', `DPkg::Lock::Timeout=${Math.ceil(lockWaitMs / 1000)}`, '-q', ...args];
    for (;;) {
      const { status, stderr } = run('apt-get', full);
      if (status === 0) return;
      const locked = /Could not get lock|Unable to lock|is another process using it/i.test(stderr);
      if (!locked || Date.now() >= deadline) {
        throw new Error(`apt-get ${args.join(' ')} failed (exit code ${status})${locked ? ': apt stayed locked' : ''}.${options.hint ? ` ${options.hint}` : ''}`);
      }
      log(`apt is busy (another apt-get or dpkg holds its lock): retrying apt-get ${args.join(' ')} in 5 s`);
      sleep(5_000);
    }
  };
  aptGet(['update']);
  aptGet(['install', '-y', '--no-install-recommends', ...packages]);
}
