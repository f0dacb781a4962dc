export { configSchema, loadConfig, ConfigError } from './config';
export type { AppConfig } from './config';
export { ConfigModule, APP_CONFIG } from './config.module';
export { nestLogLevels, redactUrl } from './log-levels';
