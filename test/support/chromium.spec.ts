import { osFamilies } from '../../bench/support/apt-get';
import { type ChromiumFacts, type CommandRunner, DEBIAN_CHROMIUM, chromiumPath, decideChromium, ensureChromium } from './chromium';

const DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nID=debian\n';
const UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n';
const FEDORA = 'NAME="Fedora Linux"\nID=fedora\n';

function facts(over: Partial<ChromiumFacts> & { present?: string[] } = {}): ChromiumFacts {
  const present = new Set(over.present ?? []);
  return { envPath: undefined, uid: 0, osRelease: DEBIAN, isExecutable: (p) => present.has(p), ...over };
}

/** A fake apt-get: records its calls; `install` makes /usr/bin/chromium appear (unless told not to). */
function fakeApt(f: { present: Set<string> }, replies: Array<{ status: number; stderr: string }> = [], appears = true) {
  const calls: string[][] = [];
  const run: CommandRunner = (command, args) => {
    calls.push([command, ...args]);
    const reply = replies.shift() ?? { status: 0, stderr: '' };
    if (reply.status === 0 && args.includes('install') && appears) f.present.add(DEBIAN_CHROMIUM);
    return reply;
  };
  return { calls, run };
}

describe('decideChromium', () => {
  it('uses CHROMIUM_PATH when it is executable, even if /usr/bin/chromium is there too', () => {
    expect(decideChromium(facts({ envPath: '/opt/chrome/chrome', present: ['/opt/chrome/chrome', DEBIAN_CHROMIUM] }))).toEqual({ action: 'use', path: '/opt/chrome/chrome' });
  });

  it('fails on a CHROMIUM_PATH that does not exist, naming it, rather than installing something else', () => {
    const d = decideChromium(facts({ envPath: '/nope/chromium' }));
    expect(d.action).toBe('fail');
    expect(d).toMatchObject({ message: expect.stringContaining('CHROMIUM_PATH=/nope/chromium') });
  });

  it('uses /usr/bin/chromium when CHROMIUM_PATH is unset (or empty)', () => {
    expect(decideChromium(facts({ present: [DEBIAN_CHROMIUM] }))).toEqual({ action: 'use', path: DEBIAN_CHROMIUM });
    expect(decideChromium(facts({ envPath: '', present: [DEBIAN_CHROMIUM], uid: 1000 }))).toEqual({ action: 'use', path: DEBIAN_CHROMIUM });
  });

  it('installs when missing and root on Debian or on Ubuntu (ID_LIKE)', () => {
    expect(decideChromium(facts())).toEqual({ action: 'install', path: DEBIAN_CHROMIUM });
    expect(decideChromium(facts({ osRelease: UBUNTU }))).toEqual({ action: 'install', path: DEBIAN_CHROMIUM });
  });

  it('when missing and not root: fails with how to install it (apt-get install chromium, CHROMIUM_PATH)', () => {
    const d = decideChromium(facts({ uid: 1000 }));
    expect(d.action).toBe('fail');
    if (d.action !== 'fail') return;
    expect(d.message).toContain('apt-get install chromium');
    expect(d.message).toContain('CHROMIUM_PATH');
    expect(d.message).toContain('needs root');
  });

  it('when missing and root elsewhere (Fedora, no os-release): fails with how to install it', () => {
    for (const osRelease of [FEDORA, undefined]) {
      const d = decideChromium(facts({ osRelease }));
      expect(d.action).toBe('fail');
      expect(d).toMatchObject({ message: expect.stringMatching(/not Debian or Ubuntu.*apt-get install chromium.*CHROMIUM_PATH/s) });
    }
  });

  it('reads ID and ID_LIKE, quoted or not', () => {
    expect(osFamilies('ID="linuxmint"\nID_LIKE="ubuntu debian"\n')).toEqual(['linuxmint', 'ubuntu', 'debian']);
    expect(osFamilies(undefined)).toEqual([]);
  });
});

describe('ensureChromium', () => {
  const quiet = { log: () => undefined, sleep: () => undefined };

  it('returns a present browser without running apt-get', () => {
    const f = { present: new Set([DEBIAN_CHROMIUM]) };
    const apt = fakeApt(f);
    expect(ensureChromium({ ...quiet, facts: facts({ isExecutable: (p) => f.present.has(p) }), run: apt.run })).toBe(DEBIAN_CHROMIUM);
    expect(apt.calls).toEqual([]);
  });

  it('root on Debian: apt-get update, then install chromium without recommends, and returns the path', () => {
    const f = { present: new Set<string>() };
    const apt = fakeApt(f);
    expect(ensureChromium({ ...quiet, facts: facts({ isExecutable: (p) => f.present.has(p) }), run: apt.run })).toBe(DEBIAN_CHROMIUM);
    expect(apt.calls.map((c) => c.filter((a) => !a.startsWith('DPkg::') && a !== '-o' && a !== '-q'))).toEqual([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', '--no-install-recommends', 'chromium'],
    ]);
    // apt itself waits for dpkg's lock too
    expect(apt.calls[1]).toEqual(expect.arrayContaining(['-o', 'DPkg::Lock::Timeout=600']));
  });

  it('waits out another apt holding the lock, then installs', () => {
    const f = { present: new Set<string>() };
    const locked = { status: 100, stderr: 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)' };
    const apt = fakeApt(f, [locked, locked]);
    const sleeps: number[] = [];
    const path = ensureChromium({ log: () => undefined, sleep: (ms) => sleeps.push(ms), facts: facts({ isExecutable: (p) => f.present.has(p) }), run: apt.run });
    expect(path).toBe(DEBIAN_CHROMIUM);
    expect(apt.calls.map((c) => c.at(-1))).toEqual(['update', 'update', 'update', 'chromium']);
    expect(sleeps).toEqual([5_000, 5_000]);
  });

  it('an apt-get failure that is not a lock fails the run at once, with how to install it', () => {
    const f = { present: new Set<string>() };
    const apt = fakeApt(f, [{ status: 0, stderr: '' }, { status: 100, stderr: 'E: Unable to locate package chromium' }]);
    expect(() => ensureChromium({ ...quiet, facts: facts({ isExecutable: (p) => f.present.has(p) }), run: apt.run })).toThrow(/apt-get install -y --no-install-recommends chromium failed \(exit code 100\).*CHROMIUM_PATH/s);
    expect(apt.calls).toHaveLength(2);
  });

  it('fails if apt-get succeeded but /usr/bin/chromium is still not there', () => {
    const f = { present: new Set<string>() };
    const apt = fakeApt(f, [], false);
    expect(() => ensureChromium({ ...quiet, facts: facts({ isExecutable: (p) => f.present.has(p) }), run: apt.run })).toThrow(/still missing/);
  });

  it('not root: throws the message, runs nothing', () => {
    const f = { present: new Set<string>() };
    const apt = fakeApt(f);
    expect(() => ensureChromium({ ...quiet, facts: facts({ uid: 1000, isExecutable: (p) => f.present.has(p) }), run: apt.run })).toThrow(/apt-get install chromium.*CHROMIUM_PATH/s);
    expect(apt.calls).toEqual([]);
  });
});

describe('chromiumPath (what the browser test calls)', () => {
  it('returns the browser, or throws instead of skipping when there is none', () => {
    expect(chromiumPath(facts({ envPath: '/x/chrome', present: ['/x/chrome'] }))).toBe('/x/chrome');
    expect(() => chromiumPath(facts({ uid: 1000 }))).toThrow(/Chromium is missing/);
    expect(() => chromiumPath(facts())).toThrow(/apt-get install chromium/);
  });
});
