import { Injectable } from '@nestjs/common';
import { ANTHROPIC_ADAPTERS } from './anthropic-adapter';
import { AUDIO_ADAPTERS } from './audio-adapter';
import { OPENAI_ADAPTERS } from './openai-adapters';
import type { ProxyKind } from './openai-request';
import type { ProtocolAdapter } from './protocol-adapter';
import { ResponsesAdapter } from './responses-adapter';
import { SCORING_ADAPTERS } from './scoring-adapter';

/** The adapters that keep no state of ours (plain objects, made once). */
export const STATELESS_ADAPTERS: Readonly<Record<Exclude<ProxyKind, 'responses'>, ProtocolAdapter>> = {
  ...OPENAI_ADAPTERS,
  ...SCORING_ADAPTERS,
  ...ANTHROPIC_ADAPTERS,
  ...AUDIO_ADAPTERS,
};

/** Every proxied operation. */
export const PROXY_KINDS = [...Object.keys(STATELESS_ADAPTERS), 'responses'] as readonly ProxyKind[];

/**
 * The adapter of every proxied operation: the one registry the request path (routes, proxy, error filter) looks
 * kinds up in. Responses' adapter keeps state of ours (Postgres), so the registry is a provider.
 */
@Injectable()
export class ProtocolAdapters {
  readonly byKind: Readonly<Record<ProxyKind, ProtocolAdapter>>;

  constructor(responses: ResponsesAdapter) {
    this.byKind = { ...STATELESS_ADAPTERS, responses };
  }
}
