import { hostname } from 'node:os';
import type { INestApplicationContext } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { loadTiersFile, ModelCatalog, noticeTargets } from '@spot/tiers';
import { TierNotFoundError } from './tiers.errors';

/** Who the CLI says took a notice. */
export const CLI_BY = `cli ${hostname()}`;

/** The replicas of `tier` a notice command is about (every replica when `endpoint` is omitted), from TIERS_FILE. */
export function noticeReplicas(app: INestApplicationContext, tier: string, endpoint: string | undefined): readonly string[] {
  const config = app.get<AppConfig>(APP_CONFIG);
  const found = noticeTargets(new ModelCatalog(loadTiersFile(config.TIERS_FILE)), tier, endpoint);
  if (!found.ok) throw new TierNotFoundError(`${found.message} (tiers file ${config.TIERS_FILE})`);
  return found.endpoints;
}
