export { ApiError, invalidApiKey, modelNotFound, invalidRequest, serverOverloaded, errorTypeForStatus, errorBody } from './openai-error';
export type { OpenAIErrorBody, OpenAIErrorType } from './openai-error';
export { normalizeUpstreamError, clientStatusForUpstream } from './upstream-error';
export { anthropicErrorBody, anthropicErrorType, normalizeUpstreamAnthropicError } from './anthropic-error';
export type { AnthropicErrorBody, AnthropicErrorType } from './anthropic-error';
export { objectId } from './object-id';
