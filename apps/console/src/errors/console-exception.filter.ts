import { type ArgumentsHost, Catch, type ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { errorPage } from '../pages/views';
import { ConsoleError } from './console.errors';

/**
 * The console's one error filter. The JSON API (/api/*, /auth/logout with JSON) answers
 * `{ error: { message, code, param } }`; pages get an HTML page, and a page that needs a session sends the
 * browser to sign in. Unexpected errors are logged and answered 500 without details.
 */
@Catch()
export class ConsoleExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('Console');

  catch(exception: unknown, host: ArgumentsHost): void {
    const req = host.switchToHttp().getRequest<FastifyRequest>();
    const reply = host.switchToHttp().getResponse<FastifyReply>();
    let status = 500;
    let code = 'server_error';
    let message = 'Something went wrong on our side.';
    let param: string | null = null;
    if (exception instanceof ConsoleError) {
      ({ status, code, message, param } = exception);
    } else if (exception instanceof HttpException) {
      status = exception.getStatus();
      code = status === 404 ? 'not_found' : status === 413 ? 'body_too_large' : 'invalid_request';
      message = status === 404 ? 'Not found.' : exception.message;
    } else {
      this.logger.error(exception instanceof Error ? (exception.stack ?? exception.message) : String(exception));
    }
    const api = req.url.startsWith('/api/') || req.url.startsWith('/stripe/') || !String(req.headers.accept ?? '').includes('text/html');
    if (api) {
      // a page route may have set text/html before it threw: the JSON answer names its own type
      void reply
        .status(status)
        .header('content-type', 'application/json; charset=utf-8')
        .header('cache-control', 'no-store')
        .send({ error: { message, code, param } });
      return;
    }
    if (status === 401) {
      // back to this page after signing in; a form post has no page to return to
      void reply.status(303).header('location', req.method === 'GET' ? `/signin?next=${encodeURIComponent(req.url)}` : '/signin').send();
      return;
    }
    void reply.status(status).header('content-type', 'text/html; charset=utf-8').send(errorPage(status, message));
  }
}
