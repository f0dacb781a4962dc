import { Module } from '@nestjs/common';
import { ApiKeysService } from './api-keys.service';

/** {@link ApiKeysService}; needs the global DbModule and RedisModule. */
@Module({ providers: [ApiKeysService], exports: [ApiKeysService] })
export class KeysModule {}
