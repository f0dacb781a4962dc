import { runCli } from './cli';

// runCli never rejects; it returns the exit status once the Nest context is closed.
void runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr }).then((status) => {
  process.exitCode = status;
  // The context is closed, so nothing should keep the process alive; if a stray timer does (ioredis keeps
  // one for 2 s after giving up on an unreachable Redis), do not make the caller's script wait for it.
  setTimeout(() => process.exit(status), 300).unref();
});
