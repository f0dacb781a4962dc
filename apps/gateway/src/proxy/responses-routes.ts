import { Injectable, type OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { ApiError, invalidRequest } from '@spot/contract';
import type { StoredResponseRow } from '@spot/db';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ApiKeyAuthService } from '../auth/api-key-auth.service';
import type { AuthedKey } from '../auth/authed-key';
import { bearerCredential } from '../auth/credential';
import { OpenAIExceptionFilter } from '../errors/openai-exception.filter';
import { RateLimiter } from '../limits/rate-limiter';
import { responseNotFound, ResponsesStore } from './responses-store';

type IdParams = { Params: { id: string } };
type ListQuery = { Params: { id: string }; Querystring: { limit?: string; order?: string; after?: string } };

const ID_PREFIX: Readonly<Record<string, string>> = { message: 'msg', function_call: 'fc', function_call_output: 'fco', reasoning: 'rs' };

/**
 * The stored-Response routes, served from Postgres (no engine): GET and DELETE /v1/responses/{id},
 * GET /v1/responses/{id}/input_items, POST /v1/responses/{id}/cancel. Authenticated like /v1/models; a key
 * gets 404 for another org's Response, an expired one, and one of a model its allow-list does not name.
 */
@Injectable()
export class ResponsesRoutes implements OnModuleInit {
  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly auth: ApiKeyAuthService,
    private readonly limiter: RateLimiter,
    private readonly store: ResponsesStore,
    private readonly errors: OpenAIExceptionFilter,
  ) {}

  onModuleInit(): void {
    const app = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    const errorHandler = (err: unknown, request: FastifyRequest, reply: FastifyReply) => this.errors.send(err, request, reply, 'responses');
    app.get<IdParams>('/v1/responses/:id', { errorHandler }, async (req) => (await this.row(req)).response);
    app.delete<IdParams>('/v1/responses/:id', { errorHandler }, async (req) => {
      const key = await this.key(req);
      await this.row(req, key);
      await this.store.delete(key.orgId, req.params.id);
      return { id: req.params.id, object: 'response', deleted: true };
    });
    app.get<ListQuery>('/v1/responses/:id/input_items', { errorHandler }, async (req) => inputItems(await this.row(req), req.query));
    app.post<IdParams>('/v1/responses/:id/cancel', { errorHandler }, async (req) => {
      const row = await this.row(req);
      // the gateway never runs a Response in the background: every stored one is a foreground one
      if (row.response.background !== true) {
        throw new ApiError(400, 'invalid_request_error', 'Only responses created with background=true can be cancelled.', null, null);
      }
      return row.response;
    });
  }

  private async key(req: FastifyRequest): Promise<AuthedKey> {
    const key = await this.auth.authenticate(bearerCredential(req.headers));
    const refused = this.limiter.refusedNow(key);
    if (refused !== null) throw refused;
    return key;
  }

  private async row(req: FastifyRequest<IdParams>, known?: AuthedKey): Promise<StoredResponseRow> {
    const key = known ?? (await this.key(req));
    const id = req.params.id;
    const row = await this.store.find(key.orgId, id);
    if (key.allowedModels !== null && !key.allowedModels.has(row.model)) throw responseNotFound(id);
    return row;
  }
}

/** An input item as OpenAI lists it: with an id, a message's text as `input_text` parts. */
function listItem(item: unknown, responseId: string, index: number): Record<string, unknown> {
  const it = { ...(item as Record<string, unknown>) };
  const type = typeof it.type === 'string' ? it.type : 'message';
  it.type = type;
  if (type === 'message') {
    if (typeof it.content === 'string') it.content = [{ type: it.role === 'assistant' ? 'output_text' : 'input_text', text: it.content }];
    it.status ??= 'completed';
  }
  // stable across reads: derived from the Response's id and the item's place
  if (typeof it.id !== 'string') it.id = `${ID_PREFIX[type] ?? 'item'}_${responseId.replace(/^resp_/, '')}${index.toString(16).padStart(4, '0')}`;
  return it;
}

/** GET /v1/responses/{id}/input_items: OpenAI's cursor list (`order` desc by default, `after` an item id, `limit` 1-100). */
function inputItems(row: StoredResponseRow, q: ListQuery['Querystring']): Record<string, unknown> {
  const limit = q.limit === undefined ? 20 : Number(q.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw invalidRequest(`Invalid 'limit': expected an integer between 1 and 100.`, 'limit', 'integer_out_of_range');
  const order = q.order ?? 'desc';
  if (order !== 'asc' && order !== 'desc') throw invalidRequest(`Invalid 'order': expected 'asc' or 'desc'.`, 'order', 'invalid_value');
  let items = row.input.map((item, i) => listItem(item, row.id, i));
  if (order === 'desc') items = items.reverse();
  if (q.after !== undefined) {
    const at = items.findIndex((it) => it.id === q.after);
    items = at < 0 ? [] : items.slice(at + 1);
  }
  const data = items.slice(0, limit);
  return {
    object: 'list',
    data,
    first_id: data.length > 0 ? data[0].id : null,
    last_id: data.length > 0 ? data[data.length - 1].id : null,
    has_more: items.length > limit,
  };
}
