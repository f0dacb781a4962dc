import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { ApiError } from '@spot/contract';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { answerEarly, answeredEarly } from '../http/early-answer';
import { internalError } from './to-api-error';

/** What can be wrong with a request below the routes: its framing, its headers, its URL or its pace. */
export type ProtocolProblem =
  | 'malformed'
  | 'timeout'
  | 'headers_too_large'
  | 'chunk_extensions_too_large'
  | 'bad_url'
  | 'url_too_long'
  | 'expectation_failed';

/** The OpenAI-style answer to a request the HTTP parser or the router refused. */
export function protocolError(problem: ProtocolProblem, detail?: string): ApiError {
  switch (problem) {
    case 'malformed':
      return new ApiError(400, 'invalid_request_error', `Malformed HTTP request${detail ? `: ${detail}` : ''}.`, 'malformed_request');
    case 'timeout':
      return new ApiError(408, 'invalid_request_error', 'The request was not received in time: the connection is closed.', 'request_timeout');
    case 'headers_too_large':
      return new ApiError(431, 'invalid_request_error', 'The request line and headers are too large.', 'headers_too_large');
    case 'chunk_extensions_too_large':
      return new ApiError(413, 'invalid_request_error', 'The chunk extensions of the request body are too large.', 'request_too_large');
    case 'bad_url':
      return new ApiError(400, 'invalid_request_error', 'Invalid URL: the path has a malformed percent-escape.', 'invalid_url');
    case 'url_too_long':
      return new ApiError(414, 'invalid_request_error', 'The URL is too long.', 'url_too_long');
    case 'expectation_failed':
      return new ApiError(417, 'invalid_request_error', 'Expectation failed: the only expectation supported is 100-continue.', 'expectation_failed');
  }
}

/** An error of Node's HTTP server (llhttp's `HPE_*` codes carry a `reason`). */
interface ClientError extends Error {
  code?: string;
  reason?: string;
}

function problemOf(err: ClientError): ApiError {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return protocolError('timeout');
    case 'HPE_HEADER_OVERFLOW':
      return protocolError('headers_too_large');
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return protocolError('chunk_extensions_too_large');
    default:
      // llhttp's reasons are fixed phrases ("Invalid header value char"), never the client's bytes
      return protocolError('malformed', typeof err.reason === 'string' ? err.reason.replace(/\.$/, '') : undefined);
  }
}

/**
 * Fastify's `clientErrorHandler`: a request Node's HTTP parser rejects (bad request line, content-length
 * with transfer-encoding, bare LF, a NUL in a header, headers too large) or one not received in time
 * (headersTimeout, requestTimeout) is answered in the OpenAI envelope, then its connection is closed. Nothing
 * is written over an answer already under way on the socket ({@link answerEarly}'s, whose drain the request
 * timeout ends).
 */
export function clientErrorHandler(err: ClientError, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return;
  // the one answer that can be under way while a request is still arriving is an early one
  if (socket.writable && !answeredEarly(socket)) {
    const error = problemOf(err);
    const body = JSON.stringify(error.toBody());
    const head = `HTTP/1.1 ${error.status} ${STATUS_CODES[error.status]}\r\ncontent-type: application/json\r\n`;
    socket.write(`${head}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
  }
  socket.destroy(err);
}

/**
 * Fastify's `frameworkErrors`: what its router refuses before any route runs (a malformed percent-escape, a
 * parameter past maxParamLength), in the envelope, answered before the body is read.
 */
export function frameworkErrorHandler(
  drainBytes: number,
): (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => void {
  return (error, request, reply) => {
    const answer =
      error.code === 'FST_ERR_BAD_URL'
        ? protocolError('bad_url')
        : error.code === 'FST_ERR_MAX_PARAM_LENGTH'
          ? protocolError('url_too_long')
          : internalError();
    reply.hijack();
    answerEarly(request.raw, reply.raw, answer, request.id, drainBytes);
  };
}
