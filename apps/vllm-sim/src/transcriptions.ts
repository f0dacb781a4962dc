import { completionTokens, type StreamBody, tokensInStep } from './generation-runner';
import { multipartBoundary, MultipartError, parseMultipart, type FormData } from './multipart';
import { invalid, missing, usageJson } from './request-checks';
import { resolveModel, type SimContext } from './sim-context';
import { SimError, validationError } from './sim-errors';
import type { ModelCounters } from './sim-metrics';
import { countWords, WordOutput } from './sim-tokens';
import { parseWav, WavError } from './wav';

/**
 * POST /v1/audio/transcriptions and /v1/audio/translations as vLLM serves them
 * (vllm/entrypoints/openai/speech_to_text.py, serving_transcription.py, protocol.py TranscriptionRequest,
 * TranscriptionResponse, TranscriptionStreamResponse): a multipart form with a WAV `file`. The sim "hears" one
 * word per started second of audio (the duration read from the RIFF header); the decoder prompt is 4 tokens
 * (start of transcript, language, task, no timestamps) plus the words of `prompt`.
 * Where vLLM differs from OpenAI the sim does what vLLM does:
 * - it streams its own `transcription.chunk` / `translation.chunk` chunks (chat-like `data:` lines, a usage
 *   chunk when `stream_include_usage`, then `[DONE]`), not OpenAI's `transcript.text.delta` events;
 * - ids are the request id, `transcribe-<id>` / `translate-<id>`;
 * - `response_format: text` still answers the JSON object (vLLM's router dumps the response model);
 * - a translation has no usage; a transcription's usage is `{"type": "duration", "seconds": ceil(duration)}`.
 */
export type AudioTask = 'transcribe' | 'translate';
type Format = 'json' | 'text' | 'verbose_json';

export interface AudioPlan {
  readonly task: AudioTask;
  readonly model: string;
  readonly counters: ModelCounters;
  readonly format: Format;
  readonly language: string;
  readonly durationS: number;
  readonly seconds: number;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly continuousUsage: boolean;
  readonly promptTokens: number;
  readonly outputs: readonly WordOutput[];
  readonly steps: number;
}

export const DECODER_PROMPT_TOKENS = 4;

function formBool(fields: ReadonlyMap<string, string>, name: string): boolean {
  const v = fields.get(name);
  if (v === undefined || v === '') return false;
  const l = v.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(l)) return true;
  if (['false', '0', 'no', 'off'].includes(l)) return false;
  throw invalid(name, 'Input should be a valid boolean, unable to interpret input');
}

/**
 * An audio request's form, read once: the form, undefined when the body is not multipart/form-data, or the
 * reason it is malformed.
 */
export type AudioForm = FormData | undefined | MultipartError;

export function readAudioForm(raw: unknown, contentType: string | undefined): AudioForm {
  const boundary = multipartBoundary(contentType);
  if (boundary === undefined || !Buffer.isBuffer(raw)) return undefined;
  try {
    return parseMultipart(raw, boundary);
  } catch (e) {
    if (!(e instanceof MultipartError)) throw e;
    return e;
  }
}

/** What the received-requests log and the fault matcher see: the fields, the file as its name and size. */
export function audioFormSummary(form: AudioForm): Record<string, unknown> {
  if (form === undefined || form instanceof MultipartError) return {};
  const out: Record<string, unknown> = Object.fromEntries(form.fields);
  const file = form.files.get('file');
  if (file) out.file = { filename: file.filename, bytes: file.data.length };
  return out;
}

export function planAudio(ctx: SimContext, task: AudioTask, form: AudioForm): AudioPlan {
  // FastAPI reads the form before validating it: anything else is a form without its required `file`.
  if (form === undefined) throw missing('file');
  if (form instanceof MultipartError) throw validationError(`There was an error parsing the body: ${form.message}`);
  const { fields, files } = form;
  const file = files.get('file');
  if (!file) throw missing('file');
  const format = fields.get('response_format') ?? 'json';
  if (!['json', 'text', 'srt', 'verbose_json', 'vtt'].includes(format)) {
    throw invalid('response_format', "Input should be 'json', 'text', 'srt', 'verbose_json' or 'vtt'");
  }
  const stream = formBool(fields, 'stream');
  const includeUsage = formBool(fields, 'stream_include_usage');
  const continuousUsage = formBool(fields, 'stream_continuous_usage_stats');
  if ((includeUsage || continuousUsage) && !stream) {
    const cls = task === 'transcribe' ? 'TranscriptionRequest' : 'TranslationRequest';
    throw validationError(
      `1 validation error for ${cls}\n  Value error, Stream options can only be defined when \`stream=True\`. [type=value_error]`,
      includeUsage ? 'stream_include_usage' : 'stream_continuous_usage_stats',
    );
  }
  const model = fields.get('model');
  const counters = resolveModel(ctx, { model: model === '' ? undefined : model });
  if (format === 'srt' || format === 'vtt') {
    throw new SimError(400, 'Currently only support response_format: `text`, `json` or `verbose_json`');
  }
  if (format === 'verbose_json' && stream) throw new SimError(400, "verbose_json format doesn't support streaming case");
  let durationS: number;
  try {
    durationS = parseWav(file.data).durationS;
  } catch (e) {
    if (!(e instanceof WavError)) throw e;
    throw new SimError(400, `Invalid or unsupported audio file: ${e.message}`);
  }
  const seconds = Math.ceil(durationS - 1e-9);
  const promptTokens = DECODER_PROMPT_TOKENS + countWords(fields.get('prompt') ?? '');
  const out = new WordOutput(seconds, seconds, 0);
  return {
    task,
    model: counters.model,
    counters,
    format: format as Format,
    language: fields.get('language') || 'en',
    durationS,
    seconds,
    stream,
    includeUsage,
    // vLLM: continuous usage only together with include_usage.
    continuousUsage: includeUsage && continuousUsage,
    promptTokens,
    outputs: [out],
    steps: out.count,
  };
}

/** Python's `str(float)`: 1.0 -> "1.0", 2.5 -> "2.5". */
function pyFloat(n: number): string {
  return Number.isInteger(n) ? `${n}.0` : String(n);
}

/** The non-streamed answer (JSON for every format, as vLLM's router dumps it). */
export function audioUnaryBody(plan: AudioPlan): string {
  const text = plan.outputs[0]!.text();
  if (plan.format === 'verbose_json') {
    const segment = {
      id: 0,
      avg_logprob: 0,
      compression_ratio: 1,
      end: plan.durationS,
      no_speech_prob: 0,
      seek: 0,
      start: 0,
      temperature: 0,
      text,
      tokens: plan.outputs[0]!.count > 0 ? Array.from({ length: plan.outputs[0]!.count }, (_, i) => 1000 + i) : [],
    };
    // vLLM's verbose responses type `duration` as a string (Python's str of the float) and carry no usage.
    return JSON.stringify({ duration: pyFloat(plan.durationS), language: plan.language, text, segments: [segment], words: null });
  }
  return JSON.stringify(plan.task === 'transcribe' ? { text, usage: { type: 'duration', seconds: plan.seconds } } : { text });
}

/** vLLM's speech-to-text stream: one chunk per token, `exclude_unset` (no finish_reason until the last). */
export class AudioStream implements StreamBody {
  readonly steps: number;
  readonly finishReason: string;
  private readonly pre: string;
  private readonly usageHead: string;

  constructor(
    private readonly plan: AudioPlan,
    id: string,
    created: number,
  ) {
    this.steps = plan.steps;
    this.finishReason = plan.outputs[0]!.finishReason;
    const object = plan.task === 'transcribe' ? 'transcription.chunk' : 'translation.chunk';
    const head = `data: {"id":${JSON.stringify(id)},"object":"${object}","created":${created},"model":${JSON.stringify(plan.model)},"choices":`;
    this.pre = `${head}[{"delta":{"content":`;
    this.usageHead = `${head}[],"usage":`;
  }

  head(): string {
    return '';
  }

  step(k: number): string {
    const o = this.plan.outputs[0]!;
    if (k >= o.count) return '';
    const end = k === o.count - 1 ? `},"finish_reason":"${o.finishReason}","stop_reason":null}]` : '}}]';
    const usage = this.plan.continuousUsage ? `,"usage":${usageJson(this.plan.promptTokens, k + 1, false)}` : '';
    return `${this.pre}${o.tokenJson(k)}${end}${usage}}\n\n`;
  }

  tokensIn(k: number): number {
    return tokensInStep(this.plan.outputs, k);
  }

  tail(): string {
    if (!this.plan.includeUsage) return 'data: [DONE]\n\n';
    return `${this.usageHead}${usageJson(this.plan.promptTokens, completionTokens(this.plan.outputs), false)}}\n\ndata: [DONE]\n\n`;
  }
}
