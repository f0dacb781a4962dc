import { Module } from '@nestjs/common';
import { ConfigModule } from '@spot/config';
import { DbModule } from '@spot/db';
import { RedisModule } from '@spot/redis';
import { WorkerLifecycle } from './worker-lifecycle';

/** The worker: Postgres and Redis for now; BullMQ processors arrive as `<queue>/<queue>.processor.ts`. */
@Module({
  imports: [ConfigModule, DbModule, RedisModule],
  providers: [WorkerLifecycle],
})
export class AppModule {}
