import { accessSync, constants } from 'node:fs';
import { type CommandRunner, aptGetInstall, readOsRelease, whyNoApt } from '../../bench/support/apt-get';

export { type CommandRunner } from '../../bench/support/apt-get';

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
  /** The text of /etc/os-release, `undefined` if there is none. */
  osRelease: string | undefined;
}

/** What to do about Chromium: use a browser that is there, install Debian's package, or stop with a message. */
export type ChromiumDecision =
  | { action: 'use'; path: string }
  | { action: 'install'; path: string }
  | { action: 'fail'; message: string };

const HOW_TO =
  "Install it (Debian/Ubuntu: `sudo apt-get install chromium`; elsewhere your system's Chromium package) " +
  'or point CHROMIUM_PATH at a Chromium or Chrome executable, then run the tests again.';

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
  const why = whyNoApt(facts.uid, facts.osRelease);
  if (why === null) return { action: 'install', path: DEBIAN_CHROMIUM };
  return {
    action: 'fail',
    message: `Chromium is missing: the browser test (test/browser) needs it, CHROMIUM_PATH is unset and ${DEBIAN_CHROMIUM} does not exist (not installing it automatically: ${why}). ${HOW_TO}`,
  };
}

/** The machine's own facts. */
export function machineFacts(env: NodeJS.ProcessEnv = process.env): ChromiumFacts {
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
    osRelease: readOsRelease(),
  };
}

/** The path of the Chromium the browser test drives, without installing anything; throws how to get one. */
export function chromiumPath(facts: ChromiumFacts = machineFacts()): string {
  const decision = decideChromium(facts);
  if (decision.action === 'use') return decision.path;
  if (decision.action === 'fail') throw new Error(decision.message);
  throw new Error(
    `Chromium is missing (${DEBIAN_CHROMIUM}, CHROMIUM_PATH unset): the browser project's global setup installs Debian's package, so run the browser test through jest (npm test), or install it: apt-get install chromium`,
  );
}

/** Options of {@link ensureChromium}; the defaults are the real machine. */
export interface EnsureChromiumOptions {
  facts?: ChromiumFacts;
  run?: CommandRunner;
  sleep?: (ms: number) => void;
  log?: (line: string) => void;
}

/**
 * Finds Chromium for the browser test, installing Debian's package (`apt-get update`, then `apt-get install -y
 * --no-install-recommends chromium`, waiting for a busy apt) when it is missing and we are root on Debian or
 * Ubuntu. Returns its path; throws a message that says how to install it otherwise, so the run fails, not skips.
 */
export function ensureChromium(options: EnsureChromiumOptions = {}): string {
  const facts = options.facts ?? machineFacts();
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const decision = decideChromium(facts);
  switch (decision.action) {
    case 'use':
      return decision.path;
    case 'fail':
      throw new Error(decision.message);
    case 'install':
      log(`Chromium is missing (${decision.path}): installing Debian's chromium for the browser test (apt-get)`);
      aptGetInstall(['chromium'], { run: options.run, sleep: options.sleep, log, hint: HOW_TO });
      if (!facts.isExecutable(decision.path)) throw new Error(`apt-get installed chromium but ${decision.path} is still missing. ${HOW_TO}`);
      log(`installed ${decision.path}`);
      return decision.path;
  }
}
