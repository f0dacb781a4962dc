import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { type ApiError, errorBody, invalidRequest, normalizeUpstreamError } from '@spot/contract';
import type { ModelApi } from '@spot/tiers';
import { bearerCredential } from '../auth/credential';
import { type AudioUpload, engineForm } from './audio-form';
import { AudioSseRelay } from './audio-sse-relay';
import type { CheckedRequest } from './openai-request';
import type { ProtocolAdapter, StreamRelay } from './protocol-adapter';
import { midstreamErrorFrame } from './sse-frames';
import { type TokenUsage, usageFromJsonTail, usageFromObject } from './token-usage';
import { wavDurationS } from './wav-duration';

export type AudioKind = 'transcriptions' | 'translations';

/** Whisper's decoder writes at most 448 tokens per 30 s window: the completion cap the limiter reserves. */
const COMPLETION_CAP = 448;
/** Bytes a second of audio takes at least, for estimates: 128 kbit/s (compressed speech is often less, WAV far more). */
const BYTES_PER_SECOND = 16_000;

/** An audio request after the gateway's checks: the form it reads as it arrives. */
export interface AudioRequest extends CheckedRequest {
  readonly upload: AudioUpload;
}

/**
 * OpenAI's speech-to-text (`/v1/audio/transcriptions`, `/v1/audio/translations`) over vLLM's: a multipart upload
 * streamed to the engine (see {@link engineForm}), the answer relayed as the engine gives it (JSON, or whatever text
 * format it answers) or, streamed, turned into OpenAI's transcript events ({@link AudioSseRelay}). Metered by what
 * the engine reports: `usage: {type: "duration", seconds}` (priced at `audio_per_minute`), token usage (a stream's
 * usage chunk, priced as tokens), a verbose answer's `duration`; a translation, for which vLLM reports nothing, by
 * the duration of a WAV header, else estimated from its size (flagged estimated).
 */
class AudioAdapter implements ProtocolAdapter {
  readonly api: ModelApi = 'audio';
  readonly upstreamPath: string;
  /** A verbose answer's `duration` comes first (its segments can be long). */
  readonly usageInHead = true;

  constructor(readonly kind: AudioKind) {
    this.upstreamPath = `/v1/audio/${kind}`;
  }

  credential(headers: IncomingHttpHeaders): string {
    return bearerCredential(headers);
  }

  check(raw: unknown, bodyBytes: number): AudioRequest {
    const upload = raw as AudioUpload;
    if (upload.model === undefined || upload.model === '') {
      throw invalidRequest('You must provide a model parameter.', 'model', 'missing_required_parameter');
    }
    const body: Record<string, unknown> = Object.fromEntries([...upload.before, ...upload.after]);
    // the fingerprint of a poisoned request (see PoisonGuard) sees the file by its digest
    body.file = upload.spool;
    let prompt = 0;
    for (const [name, value] of upload.before) if (name === 'prompt') prompt += value.length;
    return {
      body,
      model: upload.model,
      stream: upload.stream,
      clientWantsUsage: upload.stream,
      choices: 1,
      promptTokensEstimate: 4 + Math.ceil(prompt / 4),
      completionTokensCap: COMPLETION_CAP,
      // the budget's worst case: every byte audio at the lowest bitrate the estimates assume
      audioSecondsCap: Math.ceil(Math.max(bodyBytes, upload.bodyBytes) / BYTES_PER_SECOND),
      upload,
    };
  }

  /** Nothing is serialised: the body is the upload, streamed ({@link upload}). */
  upstreamBody(): string {
    return '';
  }

  upload(req: CheckedRequest, upstreamModel: string): { contentType: string; body: Readable } {
    return engineForm((req as AudioRequest).upload, upstreamModel);
  }

  streamRelay(): StreamRelay {
    return new AudioSseRelay();
  }

  usageFromBody(tail: string, head?: string | null, req?: CheckedRequest): TokenUsage | null {
    return audioUsage(head ?? null, tail) ?? (req === undefined ? null : estimatedUsage((req as AudioRequest).upload));
  }

  errorBody(status: number, message: string, code: string | null): string {
    return errorBody(status, message, code, null, 'server_error');
  }

  renderError(err: ApiError): string {
    return JSON.stringify(err.toBody());
  }

  engineError(status: number, raw: string): string {
    return JSON.stringify(normalizeUpstreamError(status, raw));
  }

  midstreamErrorFrame(message: string): Buffer {
    return midstreamErrorFrame(message);
  }
}

/** A speech-to-text `usage` object: by duration (`seconds`), or in tokens (OpenAI's or vLLM's names). */
function readAudioUsage(u: unknown): TokenUsage | null {
  if (u === null || typeof u !== 'object') return null;
  const o = u as Record<string, unknown>;
  if (o.type === 'duration') {
    return typeof o.seconds === 'number' && o.seconds >= 0 ? { prompt: 0, completion: 0, cached: 0, audioSeconds: Math.ceil(o.seconds) } : null;
  }
  if (typeof o.input_tokens === 'number') {
    const out = typeof o.output_tokens === 'number' ? o.output_tokens : 0;
    return { prompt: Math.floor(o.input_tokens), completion: Math.floor(out), cached: 0 };
  }
  return usageFromObject(u);
}

const DURATION = /"duration"\s*:\s*"?(\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/;

/** What a non-streamed answer reports: its `usage`, else a verbose answer's `duration` (seconds, rounded up). */
export function audioUsage(head: string | null, tail: string): TokenUsage | null {
  const usage = usageFromJsonTail(tail, readAudioUsage) ?? (head === null ? null : usageFromJsonTail(head, readAudioUsage));
  if (usage !== null) return usage;
  const duration = DURATION.exec(head ?? tail);
  return duration === null ? null : { prompt: 0, completion: 0, cached: 0, audioSeconds: Math.ceil(Number(duration[1]) - 1e-9) };
}

/** The usage of an answer that reports none (vLLM's translations): the upload's duration, estimated. */
export function estimatedUsage(upload: AudioUpload): TokenUsage {
  const wav = wavDurationS(upload.spool.head(4096), upload.spool.size);
  const seconds = wav ?? upload.spool.size / BYTES_PER_SECOND;
  return { prompt: 0, completion: 0, cached: 0, audioSeconds: Math.ceil(seconds - 1e-9), estimated: true };
}

export const AUDIO_ADAPTERS: Readonly<Record<AudioKind, ProtocolAdapter>> = {
  transcriptions: new AudioAdapter('transcriptions'),
  translations: new AudioAdapter('translations'),
};
