import { ApiError } from '@spot/contract';

interface FrameworkError {
  statusCode?: unknown;
  status?: unknown;
  code?: unknown;
  message?: unknown;
}

/** What can be wrong with a request body before it is read as a request. */
export type BodyProblem = 'invalid_json' | 'empty' | 'too_large' | 'media_type' | 'too_deep';

const BODY_ERRORS: Readonly<Record<string, BodyProblem>> = {
  FST_ERR_CTP_INVALID_JSON: 'invalid_json',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'empty',
  FST_ERR_CTP_BODY_TOO_LARGE: 'too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'media_type',
};

/** The OpenAI-style answer to a body problem (Fastify's body errors map here too). */
export function bodyError(problem: BodyProblem, bodyLimit: number): ApiError {
  switch (problem) {
    case 'invalid_json':
    case 'empty':
      return new ApiError(
        400,
        'invalid_request_error',
        `We could not parse the JSON body of your request. The API expects a JSON payload, but what was sent was not valid JSON.${problem === 'empty' ? ' (The body was empty.)' : ''}`,
      );
    case 'too_large':
      return new ApiError(413, 'invalid_request_error', `Request body too large: the limit is ${bodyLimit} bytes.`, 'request_too_large');
    case 'media_type':
      return new ApiError(415, 'invalid_request_error', 'Unsupported Content-Type: send the body as application/json.');
    case 'too_deep':
      return new ApiError(400, 'invalid_request_error', 'The JSON body of your request is nested too deeply.', 'invalid_json');
  }
}

/**
 * Any error a route can raise, as the {@link ApiError} the client gets: ours as they are, Fastify's body
 * errors (bad JSON, too large, wrong media type) and Nest's HTTP exceptions by status, the rest as 500.
 * `null` for an unexpected error, which the caller logs (it may carry internals) before answering 500.
 */
export function toApiError(err: unknown, method: string, url: string, bodyLimit: number): ApiError | null {
  if (err instanceof ApiError) return err;
  const e = (err ?? {}) as FrameworkError;
  const code = typeof e.code === 'string' ? e.code : '';
  const body = BODY_ERRORS[code];
  if (body !== undefined) return bodyError(body, bodyLimit);
  const status = typeof e.statusCode === 'number' ? e.statusCode : typeof e.status === 'number' ? e.status : 500;
  if (status === 404) return new ApiError(404, 'invalid_request_error', `Invalid URL (${method} ${url.split('?')[0]})`);
  if (status === 405) return new ApiError(405, 'invalid_request_error', `Method not allowed (${method} ${url.split('?')[0]})`);
  if (status >= 400 && status < 500) {
    return new ApiError(status, 'invalid_request_error', typeof e.message === 'string' ? e.message : 'Bad request.');
  }
  return null;
}

/** The 500 answer for an unexpected error: never the error's own text (it may carry internals). */
export function internalError(): ApiError {
  return new ApiError(500, 'server_error', 'The server had an error while processing your request. Sorry about that!');
}
