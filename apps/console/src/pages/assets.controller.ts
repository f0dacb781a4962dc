import { Controller, Get, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { type Asset, ASSETS } from './assets';

/** The stylesheet and script every page links (content-hashed URLs: cached for a year). */
@Controller('assets')
export class AssetsController {
  @Get('console.css')
  css(@Res() reply: FastifyReply): void {
    send(reply, ASSETS.css);
  }

  @Get('console.js')
  js(@Res() reply: FastifyReply): void {
    send(reply, ASSETS.js);
  }
}

function send(reply: FastifyReply, asset: Asset): void {
  void reply.header('content-type', asset.type).header('cache-control', 'public, max-age=31536000, immutable').send(asset.body);
}
