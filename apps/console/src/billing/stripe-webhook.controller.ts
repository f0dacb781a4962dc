import { Controller, Headers, HttpCode, Post, type RawBodyRequest, Req } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { StripeWebhookService, type WebhookOutcome } from './stripe-webhook.service';

/** POST /stripe/webhook: Stripe's deliveries, verified by signature (no session, no CSRF: Stripe signs them). */
@Controller('stripe')
export class StripeWebhookController {
  constructor(private readonly webhooks: StripeWebhookService) {}

  @Post('webhook')
  @HttpCode(200)
  receive(@Req() req: RawBodyRequest<FastifyRequest>, @Headers('stripe-signature') signature: string | undefined): Promise<WebhookOutcome> {
    return this.webhooks.handle(req.rawBody, signature);
  }
}
