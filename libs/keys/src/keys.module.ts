import { Module } from '@nestjs/common';
import { ApiKeysService } from './api-keys.service';
import { OrgChangePublisher } from './org-change.publisher';

/** {@link ApiKeysService} and {@link OrgChangePublisher}; needs the global DbModule and RedisModule. */
@Module({ providers: [ApiKeysService, OrgChangePublisher], exports: [ApiKeysService, OrgChangePublisher] })
export class KeysModule {}
