import { Module } from '@nestjs/common';
import { ConfigModule } from '@spot/config';
import { HealthController } from './health/health.controller';
import { HomeController } from './home/home.controller';

/** The console: for now a health check and a page that says what is coming. */
@Module({
  imports: [ConfigModule],
  controllers: [HealthController, HomeController],
})
export class AppModule {}
