import { ConfigError, loadConfig } from '@spot/config';
import { DEMO_LABEL, startFakeGitHub } from './fake-github';

/**
 * The local demo identity provider `npm start` runs when no GitHub OAuth app is configured: the same fake
 * GitHub the tests use, its consent page clearly labelled as a demo, offering demo accounts.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const idp = await startFakeGitHub({
    port: config.DEMO_IDP_PORT,
    host: '127.0.0.1',
    callbackUrl: new URL('/auth/github/callback', config.CONSOLE_PUBLIC_URL).toString(),
  });
  process.stdout.write(`${DEMO_LABEL}: listening on ${idp.url} (client id ${idp.clientId})\n`);
  const stop = () => {
    void idp.close().then(() => process.exit(0));
  };
  process.once('SIGTERM', stop).once('SIGINT', stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`demo identity provider failed to start: ${err instanceof ConfigError || err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
