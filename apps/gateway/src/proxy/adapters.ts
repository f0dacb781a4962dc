import { ANTHROPIC_ADAPTERS } from './anthropic-adapter';
import { OPENAI_ADAPTERS } from './openai-adapters';
import type { ProxyKind } from './openai-request';
import type { ProtocolAdapter } from './protocol-adapter';
import { SCORING_ADAPTERS } from './scoring-adapter';

/** The adapter of every proxied operation: the one registry the request path looks kinds up in. */
export const ADAPTERS: Readonly<Record<ProxyKind, ProtocolAdapter>> = {
  ...OPENAI_ADAPTERS,
  ...SCORING_ADAPTERS,
  ...ANTHROPIC_ADAPTERS,
};

/** Every proxied operation. */
export const PROXY_KINDS = Object.keys(ADAPTERS) as readonly ProxyKind[];
