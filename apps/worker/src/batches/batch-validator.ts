import { StringDecoder } from 'node:string_decoder';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiKeysRepository, BatchesRepository, type BatchRow, FilesRepository, type NewBatchLine } from '@spot/db';
import { ModelCatalog, type ModelApi } from '@spot/tiers';

/** One of OpenAI's batch validation errors (`errors.data[]`). */
export interface BatchValidationError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

const API_OF: Readonly<Record<string, ModelApi>> = {
  '/v1/chat/completions': 'chat',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
  '/v1/responses': 'responses',
};
/** Errors listed at most (the first ones, by line). */
const MAX_ERRORS = 100;
const PAGE = 1_000;

/** What validation found. */
export type Validation = { ok: true; lines: number } | { ok: false; errors: BatchValidationError[] };

/** Reads a file's lines (1-based numbers, blank lines skipped), one chunk row at a time. */
async function* fileLines(files: FilesRepository, fileId: string): AsyncGenerator<{ line: number; text: string }> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  let n = 0;
  for (let seq = 0; ; seq++) {
    const data = await files.chunk(fileId, seq);
    if (data === null) break;
    const text = rest + decoder.write(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    const parts = text.split('\n');
    rest = parts.pop() ?? '';
    for (const p of parts) {
      n++;
      if (p.trim() !== '') yield { line: n, text: p };
    }
  }
  rest += decoder.end();
  n++;
  if (rest.trim() !== '') yield { line: n, text: rest };
}

/**
 * Validates a batch's input file as OpenAI does, and stores its lines: every line a JSON object with a unique
 * `custom_id`, `method` POST, the batch's `url`, and a `body` naming a model the key may use on a batch tier;
 * at most BATCH_MAX_REQUESTS lines, BATCH_MAX_INPUT_BYTES bytes. Any error fails the batch with `errors` naming
 * the lines. The file is read twice (check, then store), a chunk at a time: never held whole.
 */
@Injectable()
export class BatchValidator {
  private readonly logger = new Logger('BatchValidator');

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(ModelCatalog) private readonly catalog: ModelCatalog,
    private readonly files: FilesRepository,
    private readonly keys: ApiKeysRepository,
    private readonly batches: BatchesRepository,
  ) {}

  /** Validates and starts a `validating` batch; returns what it found (null: the batch was not validating). */
  async run(batchId: string): Promise<Validation | null> {
    const batch = await this.batches.findById(batchId);
    if (batch === null || batch.status !== 'validating') return null;
    const result = await this.check(batch);
    if (!result.ok) {
      await this.batches.failValidation(batch.id, { object: 'list', data: result.errors });
      this.logger.log(`batch ${batch.id} failed validation (${result.errors.length} errors, first: ${result.errors[0].code})`);
      return result;
    }
    const started = await this.batches.startLines(batch.id, this.pages(batch));
    if (started) this.logger.log(`batch ${batch.id}: ${result.lines} lines to run`);
    return started ? result : null;
  }

  private async check(batch: BatchRow): Promise<Validation> {
    const errors: BatchValidationError[] = [];
    const fail = (e: BatchValidationError) => {
      if (errors.length < MAX_ERRORS) errors.push(e);
    };
    const file = await this.files.find(batch.orgId, batch.inputFileId);
    if (file === null) return { ok: false, errors: [{ code: 'file_not_found', message: `The input file ${batch.inputFileId} does not exist.`, param: 'input_file_id', line: null }] };
    if (Number(file.bytes) > this.config.BATCH_MAX_INPUT_BYTES) {
      return {
        ok: false,
        errors: [{ code: 'file_too_large', message: `The batch input file is larger than the ${this.config.BATCH_MAX_INPUT_BYTES} maximum.`, param: 'input_file_id', line: null }],
      };
    }
    const key = await this.keys.findAuthById(batch.keyId);
    const allowed = key !== null && key.allowedModels.length > 0 ? new Set(key.allowedModels) : null;
    const api = API_OF[batch.endpoint];
    const seen = new Set<string>();
    let count = 0;
    for await (const { line, text } of fileLines(this.files, file.id)) {
      count++;
      let obj: unknown;
      try {
        obj = JSON.parse(text);
      } catch {
        fail({ code: 'invalid_json_line', message: 'This line is not parseable as valid JSON.', param: null, line });
        continue;
      }
      if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
        fail({ code: 'invalid_json_line', message: 'This line is not a JSON object.', param: null, line });
        continue;
      }
      const o = obj as Record<string, unknown>;
      if (typeof o.custom_id !== 'string' || o.custom_id === '') {
        fail({ code: 'missing_required_parameter', message: "Missing required parameter: 'custom_id'.", param: 'custom_id', line });
        continue;
      }
      if (seen.has(o.custom_id)) {
        fail({
          code: 'duplicate_custom_id',
          message: 'The custom_id for this request is a duplicate of another request. The custom_id parameter must be unique for each request in a batch.',
          param: 'custom_id',
          line,
        });
        continue;
      }
      seen.add(o.custom_id);
      if (o.method !== 'POST') fail({ code: 'invalid_method', message: "Invalid value for 'method': only 'POST' is supported.", param: 'method', line });
      if (o.url !== batch.endpoint) {
        fail({ code: 'mismatched_endpoint', message: `The URL provided for this request does not match the batch endpoint ${batch.endpoint}.`, param: 'url', line });
      }
      const body = o.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        fail({ code: 'invalid_request', message: "Missing required parameter: 'body' (an object).", param: 'body', line });
        continue;
      }
      const model = (body as Record<string, unknown>).model;
      if (typeof model !== 'string' || model === '') {
        fail({ code: 'missing_required_parameter', message: "Missing required parameter: 'body.model'.", param: 'body.model', line });
      } else if (this.catalog.batchRoutesFor(model, api) === undefined || (allowed !== null && !allowed.has(model))) {
        fail({ code: 'model_not_found', message: `The model \`${model}\` does not exist, is not available for batches, or you do not have access to it.`, param: 'body.model', line });
      }
    }
    if (count === 0) fail({ code: 'empty_file', message: 'The batch input file is empty.', param: 'input_file_id', line: null });
    if (count > this.config.BATCH_MAX_REQUESTS) {
      fail({ code: 'too_many_requests', message: `The batch input file has ${count} requests; the most a batch may have is ${this.config.BATCH_MAX_REQUESTS}.`, param: 'input_file_id', line: null });
    }
    return errors.length > 0 ? { ok: false, errors } : { ok: true, lines: count };
  }

  /** The file's lines (already checked) as pages to store: custom_id and the body as JSON text. */
  private async *pages(batch: BatchRow): AsyncGenerator<NewBatchLine[]> {
    let page: NewBatchLine[] = [];
    for await (const { line, text } of fileLines(this.files, batch.inputFileId)) {
      const o = JSON.parse(text) as { custom_id: string; body: unknown };
      page.push({ line, customId: o.custom_id, body: JSON.stringify(o.body) });
      if (page.length >= PAGE) {
        yield page;
        page = [];
      }
    }
    yield page;
  }
}
