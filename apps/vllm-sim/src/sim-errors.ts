import { STATUS_CODES } from 'node:http';

/** `current`: vLLM >= 0.10 (`{"error": {...}}`); `flat`: older vLLM (`{"object": "error", ...}`). */
export type ErrorShape = 'current' | 'flat';

/** An error the sim answers with, in vLLM's vocabulary (Python class names or HTTP phrases in `type`). */
export class SimError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string = errorTypeFor(status),
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

/** FastAPI's RequestValidationError handler in vLLM: `type` is the HTTP phrase, not a class name. */
export function validationError(message: string, param: string | null = null): SimError {
  return new SimError(400, message, 'Bad Request', param);
}

/** vLLM's `_check_model` wording. */
export function modelNotFound(model: string): SimError {
  return new SimError(404, `The model \`${model}\` does not exist.`, 'NotFoundError');
}

/** Python-style class name for a status: 500 -> InternalServerError, 503 -> ServiceUnavailableError. */
export function errorTypeFor(status: number): string {
  const phrase = (STATUS_CODES[status] ?? 'Unknown').replace(/[^A-Za-z]/g, '');
  return phrase.endsWith('Error') ? phrase : `${phrase}Error`;
}

/** The body of a non-streaming error response (Starlette's compact JSON). */
export function errorBody(err: SimError, shape: ErrorShape): string {
  if (shape === 'flat') {
    return JSON.stringify({ object: 'error', message: err.message, type: err.type, param: err.param, code: err.status });
  }
  return JSON.stringify({ error: { message: err.message, type: err.type, param: err.param, code: err.status } });
}

/**
 * The `data:` payload vLLM yields when a stream fails mid-way. vLLM builds it with Python's `json.dumps`,
 * hence the `", "` / `": "` separators, which differ from the compact chunks around it.
 */
export function streamingErrorPayload(err: SimError, shape: ErrorShape): string {
  const inner =
    `{${shape === 'flat' ? '"object": "error", ' : ''}"message": ${JSON.stringify(err.message)}, ` +
    `"type": ${JSON.stringify(err.type)}, "param": ${err.param === null ? 'null' : JSON.stringify(err.param)}, ` +
    `"code": ${err.status}}`;
  return `{"error": ${inner}}`;
}
