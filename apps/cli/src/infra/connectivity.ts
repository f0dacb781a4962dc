import { probeServices, type ProbeTargets } from '@spot/health';
import { ServiceUnreachableError } from '../cli.errors';

export type Endpoints = ProbeTargets;

/**
 * Asks Postgres and Redis for one trivial answer each, in parallel, so that a command fails in seconds
 * with the name and URL of what is down instead of hanging on it.
 * @throws ServiceUnreachableError naming each unreachable service.
 */
export async function assertReachable(e: Endpoints, timeoutMs = 5_000): Promise<void> {
  const { problems, cause } = await probeServices(e, timeoutMs);
  if (problems.length > 0) throw new ServiceUnreachableError(problems.join('; '), { cause });
}
