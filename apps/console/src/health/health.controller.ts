import { Controller, Get, Header } from '@nestjs/common';

/** Liveness for load balancers and compose: answers while the process serves HTTP, needs nothing else. */
@Controller()
export class HealthController {
  @Get('healthz')
  @Header('cache-control', 'no-store')
  health(): { status: 'ok' } {
    return { status: 'ok' };
  }
}
