import type { Provider } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { loadTiersFile, ModelCatalog } from '@spot/tiers';

/** The models and tiers from TIERS_FILE, loaded and validated once at boot (an invalid file stops boot). */
export const modelCatalogProvider: Provider = {
  provide: ModelCatalog,
  inject: [APP_CONFIG],
  useFactory: (config: AppConfig) => new ModelCatalog(loadTiersFile(config.TIERS_FILE)),
};
