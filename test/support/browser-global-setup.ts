import { ensureChromium } from './chromium';
import migrate from './global-setup';

/**
 * The browser project's setup: finds Chromium (installing Debian's package when root on Debian/Ubuntu, else
 * failing the run with how to install it) and hands its path to the tests in CHROMIUM_PATH; then migrates.
 * Jest runs it only when a browser test is selected, so other runs never wait for apt.
 */
export default function browserGlobalSetup(): void {
  process.env.CHROMIUM_PATH = ensureChromium();
  migrate();
}
