import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { STATUS_CODES, type IncomingHttpHeaders } from 'node:http';
import { ZodError } from 'zod';
import { ChatStream, chatUnaryBody, planChat } from './chat-completions';
import { CompletionStream, completionUnaryBody, planCompletion } from './completions';
import { embeddingBody, planEmbedding } from './embeddings';
import { Exchange } from './exchange';
import { FaultController, type FaultSpec, type ParsedFault } from './fault-plan';
import { runStream, runUnary, type Cut, type Timing } from './generation-runner';
import { anthropicErrorJson, countTokensBody, MessagesStream, messagesUnaryBody, planMessages } from './messages';
import { PrefixCache } from './prefix-cache';
import { parseBody, type Body } from './request-checks';
import { planResponses, ResponsesStream, responsesUnaryBody } from './responses';
import { planRerank, planScore, rerankBody, scoreBody } from './scoring';
import { randomHex, requestId, type SimContext } from './sim-context';
import { errorBody, SimError, streamingErrorPayload, type ErrorShape } from './sim-errors';
import { emptyStats, ModelCounters, renderMetrics, type SimStats } from './sim-metrics';
import { AudioStream, audioFormSummary, audioUnaryBody, planAudio, readAudioForm, type AudioForm, type AudioTask } from './transcriptions';

export { FaultController } from './fault-plan';
export type { FaultSpec } from './fault-plan';
export type { ErrorShape } from './sim-errors';
export type { SimStats } from './sim-metrics';

/** How to run the simulator. */
export interface SimOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** What a `crash` fault does; default: cut every connection and stop listening (a process exits instead). */
  onCrash?: () => void;
  /** Default 127.0.0.1. */
  host?: string;
  /** Served model names; the first one answers requests that name no model. */
  models: string[];
  /** Delay before the first token (default 0). */
  ttftMs?: number;
  /** Delay between tokens (default 0: the whole stream is written at once). */
  itlMs?: number;
  /** Tokens a plain answer has unless max_tokens cuts it (default 16). */
  outputTokens?: number;
  /** Context window reported by /v1/models and enforced on prompt + max_tokens (default 8192). */
  maxModelLen?: number;
  /** Embedding vector size (default 16). */
  embeddingDim?: number;
  /** Error body shape (default `current`). */
  errorShape?: ErrorShape;
  /** What GET /version reports (default 0.11.0). */
  version?: string;
  /** How long POST /wake_up takes (default 0). */
  wakeUpMs?: number;
  /**
   * Report prefix-cache hits (default false), like vLLM with `--enable-prompt-tokens-details`: a prompt whose
   * leading 16-token blocks were seen before reports them as cached_tokens (chat, completions), as
   * input_tokens_details.cached_tokens (responses) and cache_read_input_tokens (messages).
   */
  prefixCaching?: boolean;
  /**
   * How many requests generate at once (default: no limit), like vLLM's `--max-num-seqs`: the others wait, in
   * order of arrival, counted in `vllm:num_requests_waiting`, until a running one ends.
   */
  maxNumSeqs?: number;
}

/** A request the sim received, as it arrived (body parsed when it was JSON, else the raw text). */
export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: unknown;
}

/** A running simulator. */
export interface SimServer {
  /** e.g. http://127.0.0.1:PORT (no trailing slash, no /v1). */
  readonly url: string;
  readonly port: number;
  readonly faults: FaultController;
  /** Live counters. */
  readonly stats: SimStats;
  /** The last 100 requests to /v1/* and the other inference paths (/rerank, /score...), oldest first. */
  readonly received: ReceivedRequest[];
  /** Whether the engine is in vLLM sleep mode (POST /sleep, POST /wake_up). */
  sleeping: boolean;
  /** Clears faults, received requests, counters (not the running/waiting gauges), the prefix cache and a pending crashIn. */
  reset(): void;
  /** The engine dies in `ms` (as a crash fault does): a spot replica lost at a given moment. */
  crashIn(ms: number): void;
  close(): Promise<void>;
}

const RECEIVED_MAX = 100;
const UNCOUNTED = emptyStats();
type InferenceKind =
  | 'chat'
  | 'completion'
  | 'embedding'
  | 'responses'
  | 'messages'
  | 'count_tokens'
  | 'rerank'
  | 'score'
  | 'transcription'
  | 'translation';

/** Audio routes take a multipart form, every other inference route JSON. */
function isAudio(kind: InferenceKind): kind is 'transcription' | 'translation' {
  return kind === 'transcription' || kind === 'translation';
}

/** Starts a vLLM-faithful OpenAI-compatible engine simulator. */
export async function startSim(opts: SimOptions): Promise<SimServer> {
  if (opts.models.length === 0) throw new Error('startSim: at least one model is required');
  const stats = emptyStats();
  const faults = new FaultController();
  const models = new Map(opts.models.map((m) => [m, new ModelCounters(m)]));
  const ctx: SimContext = {
    models,
    defaultModel: opts.models[0]!,
    ttftMs: opts.ttftMs ?? 0,
    itlMs: opts.itlMs ?? 0,
    outputTokens: opts.outputTokens ?? 16,
    maxModelLen: opts.maxModelLen ?? 8192,
    embeddingDim: opts.embeddingDim ?? 16,
    errorShape: opts.errorShape ?? 'current',
    faults,
    stats,
    prefixCache: opts.prefixCaching ? new PrefixCache() : undefined,
  };
  const timing: Timing = { ttftMs: ctx.ttftMs, itlMs: ctx.itlMs };
  const shape = ctx.errorShape;
  const received: ReceivedRequest[] = [];
  const record = (method: string, path: string, headers: IncomingHttpHeaders, body: unknown): void => {
    received.push({ method, path, headers, body });
    if (received.length > RECEIVED_MAX) received.shift();
  };

  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 * 1024, forceCloseConnections: true });
  // Bodies are parsed by the handlers so that bad JSON gets vLLM's error, not Fastify's.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => done(null, body));
  // Audio uploads stay bytes; the parts are views of this one buffer.
  app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: { statusCode?: number; message: string }, _req, reply) => {
    const status = err.statusCode && err.statusCode >= 400 ? err.statusCode : 500;
    void reply.code(status).type('application/json').send(errorBody(new SimError(status, err.message), shape));
  });
  app.setNotFoundHandler((_req, reply) => {
    void reply.code(404).type('application/json').send('{"detail":"Not Found"}');
  });

  let crashTimer: NodeJS.Timeout | undefined;
  /** A poisonous request killed the engine: every connection goes, the port stops listening. */
  const crash = (): void => {
    if (crashTimer) clearTimeout(crashTimer);
    crashTimer = undefined;
    stats.crashes++;
    if (opts.onCrash) {
      opts.onCrash();
      return;
    }
    app.server.closeAllConnections();
    void app.close();
  };

  const server: SimServer = {
    url: '',
    port: 0,
    faults,
    stats,
    received,
    sleeping: false,
    reset() {
      faults.clear();
      received.length = 0;
      ctx.prefixCache?.clear();
      if (crashTimer) clearTimeout(crashTimer);
      crashTimer = undefined;
      const { running, waiting } = stats;
      Object.assign(stats, emptyStats(), { running, waiting });
    },
    crashIn(ms: number) {
      if (crashTimer) clearTimeout(crashTimer);
      crashTimer = setTimeout(crash, ms);
    },
    close: async () => {
      if (crashTimer) clearTimeout(crashTimer);
      await app.close();
    },
  };

  /** What a mid-generation fault does; `frame` writes the protocol's error event (default: vLLM's data frame). */
  const cutOf = (ex: Exchange, fault: ParsedFault | undefined, frame?: (err: SimError, sent: number) => string): Cut | undefined => {
    if (!fault) return undefined;
    if (fault.kind === 'drop') return { kind: 'drop', afterTokens: fault.afterTokens };
    if (fault.kind === 'stall') return { kind: 'stall', afterTokens: fault.afterTokens };
    if (fault.kind === 'crash' && fault.afterTokens) return { kind: 'crash', afterTokens: fault.afterTokens, crash };
    if (fault.kind !== 'error-after') return undefined;
    const err = faultError(fault.status ?? 500, fault.message, fault.type);
    const done = fault.done === false ? '' : 'data: [DONE]\n\n';
    const write = frame ? (sent: number) => frame(err, sent) : () => `data: ${streamingErrorPayload(err, shape)}\n\n${done}`;
    return { kind: 'error', afterTokens: fault.afterTokens, frame: write, unary: () => ex.error(err) };
  };

  /** Applies the faults that act before any generation; true when the request is answered. */
  const preempt = (ex: Exchange, fault: ParsedFault | undefined, generating: boolean): boolean => {
    if (!fault) return false;
    switch (fault.kind) {
      case 'error-before':
        ex.error(faultError(fault.status, fault.message, fault.type), fault.headers);
        return true;
      case 'hang':
        if (generating) ex.start(0);
        return true;
      case 'drop':
      case 'error-after':
        // While generating, the runner applies them after `afterTokens` (0: before the first token).
        if (generating) return false;
        if (fault.kind === 'drop') ex.drop();
        else ex.error(faultError(fault.status ?? 500, fault.message, fault.type));
        return true;
      case 'slow-start':
      case 'stall':
        return false;
      case 'crash':
        // With afterTokens, the runner kills the engine mid-generation.
        if (generating && fault.afterTokens) return false;
        crash();
        return true;
    }
  };

  const generate = (
    ex: Exchange,
    kind: InferenceKind,
    body: Body,
    headers: IncomingHttpHeaders,
    fault: ParsedFault | undefined,
    form: AudioForm,
  ): void => {
    if (preempt(ex, fault, true)) return;
    if (server.sleeping) {
      ex.error(new SimError(503, 'The engine is sleeping; POST /wake_up first.'));
      return;
    }
    const created = Math.floor(Date.now() / 1000);
    const cut = cutOf(ex, fault);
    switch (kind) {
      case 'chat': {
        const plan = planChat(ctx, body);
        ex.start(plan.promptTokens);
        const id = `chatcmpl-${requestId(headers['x-request-id'])}`;
        const stream = new ChatStream(plan, id, created);
        if (plan.flags.stream) runStream(ex, stream, timing, cut);
        else runUnary(ex, plan.steps, (k) => stream.tokensIn(k), timing, cut, () => ex.ok(chatUnaryBody(plan, id, created), stream.finishReason));
        return;
      }
      case 'completion': {
        const plan = planCompletion(ctx, body);
        ex.start(plan.promptTokens.reduce((a, b) => a + b, 0));
        const id = `cmpl-${requestId(headers['x-request-id'])}`;
        const stream = new CompletionStream(plan, id, created);
        if (plan.flags.stream) runStream(ex, stream, timing, cut);
        else runUnary(ex, plan.steps, (k) => stream.tokensIn(k), timing, cut, () => ex.ok(completionUnaryBody(plan, id, created), stream.finishReason));
        return;
      }
      case 'embedding': {
        const plan = planEmbedding(ctx, body);
        ex.start(plan.promptTokens);
        runUnary(ex, 1, () => 0, timing, cut, () => ex.ok(embeddingBody(plan, ctx.embeddingDim, created), 'stop'));
        return;
      }
      case 'responses': {
        const plan = planResponses(ctx, body);
        ex.start(plan.chat.promptTokens);
        const stream = new ResponsesStream(plan, `resp_${randomHex()}`, created);
        if (plan.stream) runStream(ex, stream, timing, cutOf(ex, fault, (err, sent) => stream.errorFrame(err, sent)));
        else {
          const respond = (): void => ex.ok(responsesUnaryBody(plan, stream.id, created), stream.finishReason);
          runUnary(ex, plan.chat.steps, (k) => stream.tokensIn(k), timing, cut, respond);
        }
        return;
      }
      case 'messages': {
        const plan = planMessages(ctx, body);
        ex.start(plan.chat.promptTokens);
        const id = `chatcmpl-${requestId(headers['x-request-id'])}`;
        const stream = new MessagesStream(plan, id);
        if (plan.stream) runStream(ex, stream, timing, cutOf(ex, fault, (err) => stream.errorFrame(err)));
        else runUnary(ex, plan.chat.steps, (k) => stream.tokensIn(k), timing, cut, () => ex.ok(messagesUnaryBody(plan, id), stream.finishReason));
        return;
      }
      case 'count_tokens': {
        // Rendering only: no engine request, so no prompt tokens processed and no finished request.
        const { json } = countTokensBody(ctx, body);
        runUnary(ex, 0, () => 0, timing, cut, () => ex.answer(json));
        return;
      }
      case 'rerank': {
        const plan = planRerank(ctx, body);
        ex.start(plan.promptTokens);
        runUnary(ex, 1, () => 0, timing, cut, () => ex.ok(rerankBody(plan, `rerank-${requestId(headers['x-request-id'])}`), 'stop'));
        return;
      }
      case 'score': {
        const plan = planScore(ctx, body);
        ex.start(plan.promptTokens);
        runUnary(ex, 1, () => 0, timing, cut, () => ex.ok(scoreBody(plan, `score-${requestId(headers['x-request-id'])}`, created), 'stop'));
        return;
      }
      case 'transcription':
      case 'translation': {
        const task: AudioTask = kind === 'transcription' ? 'transcribe' : 'translate';
        const plan = planAudio(ctx, task, form);
        ex.start(plan.promptTokens);
        const stream = new AudioStream(plan, `${task}-${requestId(headers['x-request-id'])}`, created);
        if (plan.stream) runStream(ex, stream, timing, cut);
        else runUnary(ex, plan.steps, (k) => stream.tokensIn(k), timing, cut, () => ex.ok(audioUnaryBody(plan), stream.finishReason));
        return;
      }
    }
  };

  const inference = (kind: InferenceKind, path: string) => (req: FastifyRequest, reply: FastifyReply): void => {
    reply.hijack();
    const ex = new Exchange(reply.raw, stats, shape);
    if (kind === 'messages' || kind === 'count_tokens') {
      // vLLM's router translates handler errors into Anthropic's envelope; request validation errors come from
      // its global handler, in the OpenAI one.
      ex.errorJson = (err) => (err.type === 'Bad Request' ? errorBody(err, shape) : anthropicErrorJson(err));
    }
    const form = isAudio(kind) ? readAudioForm(req.body, req.headers['content-type']) : undefined;
    let body: Body;
    try {
      body = isAudio(kind) ? audioFormSummary(form) : parseBody(req.body, req.headers['content-type']);
    } catch (e) {
      record(req.method, path, req.headers, req.body);
      ex.error(e as SimError);
      return;
    }
    record(req.method, path, req.headers, body);
    const model = typeof body.model === 'string' && body.model !== '' ? body.model : ctx.defaultModel;
    ex.model = models.get(model);
    const raw = typeof req.body === 'string' || Buffer.isBuffer(req.body) ? req.body : undefined;
    const fault = faults.size > 0 ? faults.take(path, model, raw) : undefined;
    const run = (): void => {
      try {
        generate(ex, kind, body, req.headers, fault, form);
      } catch (e) {
        // Like vLLM, an unexpected exception becomes a 500 rather than taking the engine down.
        ex.error(e instanceof SimError ? e : new SimError(500, e instanceof Error ? e.message : String(e)));
      }
    };
    const scheduled = (): void => schedule(ex, run);
    if (fault?.delayMs) ex.hold(fault.delayMs, scheduled);
    else scheduled();
  };

  // --max-num-seqs: a slot per generating request; a request that ends hands its slot to the first one still waiting
  let freeSeqs = opts.maxNumSeqs ?? Infinity;
  const queued: Array<{ ex: Exchange; run: () => void }> = [];
  const release = (): void => {
    for (let next = queued.shift(); next !== undefined; next = queued.shift()) {
      if (next.ex.isClosed) continue;
      next.ex.onEnd = release;
      next.run();
      return;
    }
    freeSeqs++;
  };
  const schedule = (ex: Exchange, run: () => void): void => {
    if (freeSeqs > 0) {
      freeSeqs--;
      ex.onEnd = release;
      run();
      return;
    }
    ex.queue();
    queued.push({ ex, run });
  };

  app.post('/v1/chat/completions', inference('chat', '/v1/chat/completions'));
  app.post('/v1/completions', inference('completion', '/v1/completions'));
  app.post('/v1/embeddings', inference('embedding', '/v1/embeddings'));
  app.post('/v1/responses', inference('responses', '/v1/responses'));
  app.post('/v1/messages', inference('messages', '/v1/messages'));
  app.post('/v1/messages/count_tokens', inference('count_tokens', '/v1/messages/count_tokens'));
  for (const path of ['/v1/rerank', '/rerank', '/v2/rerank']) app.post(path, inference('rerank', path));
  for (const path of ['/v1/score', '/score']) app.post(path, inference('score', path));
  app.post('/v1/audio/transcriptions', inference('transcription', '/v1/audio/transcriptions'));
  app.post('/v1/audio/translations', inference('translation', '/v1/audio/translations'));

  /** A plain endpoint, still subject to faults that name its path (e.g. a failing /health). */
  const plain =
    (path: string, answer: (req: FastifyRequest, ex: Exchange) => void) =>
    (req: FastifyRequest, reply: FastifyReply): void => {
      const fault = faults.size > 0 ? faults.take(path, undefined) : undefined;
      reply.hijack();
      // Plain endpoints stay out of the inference counters.
      const ex = new Exchange(reply.raw, UNCOUNTED, shape);
      if (path.startsWith('/v1/')) record(req.method, path, req.headers, undefined);
      const run = (): void => {
        if (!preempt(ex, fault, false)) answer(req, ex);
      };
      if (fault?.delayMs) ex.hold(fault.delayMs, run);
      else run();
    };
  const sendJson = (ex: Exchange, value: unknown): void => ex.json(200, JSON.stringify(value));

  app.get('/health', plain('/health', (_req, ex) => {
    ex.res.writeHead(200, { 'content-length': 0 });
    ex.res.end();
  }));
  app.get('/version', plain('/version', (_req, ex) => sendJson(ex, { version: opts.version ?? '0.11.0' })));
  app.get('/v1/models', plain('/v1/models', (_req, ex) => {
    const created = Math.floor(Date.now() / 1000);
    const data = opts.models.map((id) => ({
      id,
      object: 'model',
      created,
      owned_by: 'vllm',
      root: id,
      parent: null,
      max_model_len: ctx.maxModelLen,
      permission: [
        {
          id: `modelperm-${randomHex()}`,
          object: 'model_permission',
          created,
          allow_create_engine: false,
          allow_sampling: true,
          allow_logprobs: true,
          allow_search_indices: false,
          allow_view: true,
          allow_fine_tuning: false,
          organization: '*',
          group: null,
          is_blocking: false,
        },
      ],
    }));
    sendJson(ex, { object: 'list', data });
  }));
  app.get('/metrics', plain('/metrics', (_req, ex) => {
    const text = renderMetrics(models.values());
    ex.res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
    ex.res.end(text);
  }));

  // vLLM sleep mode (dev endpoints).
  app.post('/sleep', (req, reply) => {
    record('POST', '/sleep', req.headers, null);
    server.sleeping = true;
    void reply.code(200).send('');
  });
  app.post('/wake_up', async (req, reply) => {
    record('POST', '/wake_up', req.headers, null);
    const ms = opts.wakeUpMs ?? 0;
    if (ms > 0) await new Promise((r) => setTimeout(r, ms));
    server.sleeping = false;
    return reply.code(200).send('');
  });
  app.get('/is_sleeping', (_req, reply) => {
    void reply.send({ is_sleeping: server.sleeping });
  });

  // Test control.
  app.post('/sim/faults', (req, reply) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(String(req.body ?? ''));
    } catch {
      void reply.code(400).send({ error: 'body must be JSON: a fault or an array of faults' });
      return;
    }
    const specs = (Array.isArray(parsed) ? parsed : [parsed]) as FaultSpec[];
    try {
      faults.add(...specs);
    } catch (e) {
      if (!(e instanceof ZodError)) throw e;
      void reply.code(400).send({ error: 'invalid fault', issues: e.issues });
      return;
    }
    void reply.send({ queued: specs.length, faults: faults.list() });
  });
  app.get('/sim/faults', (_req, reply) => {
    void reply.send({ faults: faults.list() });
  });
  app.delete('/sim/faults', (_req, reply) => {
    void reply.send({ cleared: faults.clear() });
  });
  app.get('/sim/stats', (_req, reply) => {
    void reply.send(stats);
  });
  app.get('/sim/received', (_req, reply) => {
    void reply.send(received);
  });
  app.post('/sim/crash-at', (req, reply) => {
    let ms: unknown;
    try {
      ms = (JSON.parse(String(req.body ?? '')) as { in_ms?: unknown }).in_ms;
    } catch {
      ms = undefined;
    }
    if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0) {
      void reply.code(400).send({ error: 'body must be {"in_ms": N} with N an integer >= 0' });
      return;
    }
    server.crashIn(ms);
    void reply.send({ crash_in_ms: ms });
  });
  app.post('/sim/reset', (_req, reply) => {
    server.reset();
    void reply.send({ ok: true });
  });

  await app.listen({ port: opts.port ?? 0, host: opts.host ?? '127.0.0.1' });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('vllm-sim: no TCP address');
  const host = address.address === '0.0.0.0' || address.address === '::' ? '127.0.0.1' : address.address;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return Object.assign(server, { url: `http://${urlHost}:${address.port}`, port: address.port });
}

function faultError(status: number, message: string | undefined, type: string | undefined): SimError {
  return new SimError(status, message ?? STATUS_CODES[status] ?? 'Error', type);
}
