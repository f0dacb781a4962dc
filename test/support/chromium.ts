import { spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';

/** Where Debian's `chromium` package puts the browser, and where the browser test looks when CHROMIUM_PATH is unset. */
export const DEBIAN_CHROMIUM = '/usr/bin/chromium';

/** What the lookup needs to know about the machine; injected so the decision is testable without a machine. */
export interface ChromiumFacts {
  /** CHROMIUM_PATH, if set (an empty string counts as unset). */
  envPath: string | undefined;
  /** Whether a file exists and is executable. */
  isExecutable(path: string): boolean;
  /** The effective user id (`undefined` where the platform has none, e.g. Windows). */
  uid: number | undefined;
  /** The text of /etc/os-release, `undefined` if it is unreadable. */
  osRelease: string | undefined;
}

/** What to do about Chromium: use a browser that is there, install Debian's package, or stop with a message. */
export type ChromiumDecision =
  | { action: 'use'; path: string }
  | { action: 'install'; path: string }
  | { action: 'fail'; message: string };

const HOW_TO =
  'Install it (Debian/Ubuntu: `sudo apt-get install chromium`; elsewhere your system\'s Chromium package) ' +
  'or point CHROMIUM_PATH at a Chromium or Chrome executable, then run the tests again.';

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

/**
 * Decides where the browser test's Chromium comes from: CHROMIUM_PATH if set (it must exist: a wrong explicit
 * path is an error, not a reason to install something else), else /usr/bin/chromium, else Debian's package when
 * we are root on Debian or Ubuntu, else a message that says how to get one. Never "skip".
 */
export function decideChromium(facts: ChromiumFacts): ChromiumDecision {
  const envPath = facts.envPath === '' ? undefined : facts.envPath;
  if (envPath !== undefined) {
    if (facts.isExecutable(envPath)) return { action: 'use', path: envPath };
    return {
      action: 'fail',
      message: `CHROMIUM_PATH=${envPath} is not an executable file: the browser test (test/browser) needs Chromium. ${HOW_TO}`,
    };
  }
  if (facts.isExecutable(DEBIAN_CHROMIUM)) return { action: 'use', path: DEBIAN_CHROMIUM };
  const families = osFamilies(facts.osRelease);
  const debianLike = families.includes('debian') || families.includes('ubuntu');
  if (facts.uid === 0 && debianLike) return { action: 'install', path: DEBIAN_CHROMIUM };
  const why =
    facts.uid !== 0
      ? 'not installing it automatically: that needs root'
      : `not installing it automatically: this is not Debian or Ubuntu (os-release ID/ID_LIKE: ${families.join(' ') || 'unknown'})`;
  return {
    action: 'fail',
    message: `Chromium is missing: the browser test (test/browser) needs it, CHROMIUM_PATH is unset and ${DEBIAN_CHROMIUM} does not exist (${why}). ${HOW_TO}`,
  };
}

/** The machine's own facts. */
export function machineFacts(env: NodeJS.ProcessEnv = process.env): ChromiumFacts {
  let osRelease: string | undefined;
  try {
    osRelease = readFileSync('/etc/os-release', 'utf8');
  } catch (err) {
    // no os-release (macOS, Windows, a bare container): not Debian, so no automatic install
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error('cannot read /etc/os-release', { cause: err });
  }
  return {
    envPath: env.CHROMIUM_PATH,
    isExecutable: (path) => {
      try {
        accessSync(path, constants.X_OK);
        return true;
      } catch (err) {
        if (['ENOENT', 'EACCES', 'ENOTDIR'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
        throw new Error(`cannot check ${path}`, { cause: err });
      }
    },
    uid: process.getuid?.(),
    osRelease,
  };
}

/** The path of the Chromium the browser test drives, without installing anything; throws how to get one. */
export function chromiumPath(facts: ChromiumFacts = machineFacts()): string {
  const decision = decideChromium(facts);
  if (decision.action === 'use') return decision.path;
  if (decision.action === 'fail') throw new Error(decision.message);
  throw new Error(
    `Chromium is missing (${DEBIAN_CHROMIUM}, CHROMIUM_PATH unset): the browser project's global setup installs Debian's package; run the browser test through jest (npm test), or install it: apt-get install chromium`,
  );
}

/** Runs one command; returns its exit status and what it wrote to stderr (also passed through to ours). */
export type CommandRunner = (command: string, args: string[]) => { status: number | null; stderr: string };

const runCommand: CommandRunner = (command, args) => {
  const r = spawnSync(command, args, {
    stdio: ['ignore', 'inherit', 'pipe'],
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.error) throw new Error(`cannot run ${command}`, { cause: r.error });
  process.stderr.write(r.stderr);
  return { status: r.status, stderr: r.stderr };
};

/** Options of {@link ensureChromium}; the defaults are the real machine. */
export interface EnsureChromiumOptions {
  facts?: ChromiumFacts;
  run?: CommandRunner;
  sleep?: (ms: number) => void;
  log?: (line: string) => void;
  /** How long to wait, in all, for another apt or dpkg to let go of its lock. */
  lockWaitMs?: number;
}

const sleepSync = (ms: number): void => {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
};

/** An apt-get that waits for another apt or dpkg (another test run, unattended-upgrades) instead of failing. */
function aptGet(args: string[], run: CommandRunner, sleep: (ms: number) => void, lockWaitMs: number, log: (line: string) => void): void {
  // apt itself waits this long for dpkg's frontend lock; the lists lock of `update` is retried here
  const full = ['-o', `DPkg::Lock::Timeout=${Math.ceil(lockWaitMs / 1000)}`, '-q', ...args];
  const deadline = Date.now() + lockWaitMs;
  for (;;) {
    const { status, stderr } = run('apt-get', full);
    if (status === 0) return;
    const locked = /Could not get lock|Unable to lock|is another process using it/i.test(stderr);
    if (!locked || Date.now() >= deadline) {
      throw new Error(`apt-get ${args.join(' ')} failed (exit code ${status})${locked ? ': apt stayed locked' : ''}. ${HOW_TO}`);
    }
    log(`apt is busy (another apt-get or dpkg holds its lock): retrying apt-get ${args.join(' ')} in 5 s`);
    sleep(5_000);
  }
}

/**
 * Finds Chromium for the browser test, installing Debian's package (`apt-get update`, then `apt-get install -y
 * --no-install-recommends chromium`) when it is missing and we are root on Debian or Ubuntu. Returns its path;
 * throws a message that says how to install it otherwise, so the run fails rather than skips.
 */
export function ensureChromium(options: EnsureChromiumOptions = {}): string {
  const facts = options.facts ?? machineFacts();
  const run = options.run ?? runCommand;
  const sleep = options.sleep ?? sleepSync;
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const lockWaitMs = options.lockWaitMs ?? 600_000;
  const decision = decideChromium(facts);
  switch (decision.action) {
    case 'use':
      return decision.path;
    case 'fail':
      throw new Error(decision.message);
    case 'install': {
      log(`Chromium is missing (${decision.path}): installing Debian's chromium for the browser test (apt-get)`);
      aptGet(['update'], run, sleep, lockWaitMs, log);
      aptGet(['install', '-y', '--no-install-recommends', 'chromium'], run, sleep, lockWaitMs, log);
      if (!facts.isExecutable(decision.path)) {
        throw new Error(`apt-get installed chromium but ${decision.path} is still missing. ${HOW_TO}`);
      }
      log(`installed ${decision.path}`);
      return decision.path;
    }
  }
}
