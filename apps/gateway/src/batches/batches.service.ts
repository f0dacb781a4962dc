import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import { ApiError, invalidRequest, objectId } from '@spot/contract';
import { BatchesRepository, FilesRepository } from '@spot/db';
import type { AuthedKey } from '../auth/authed-key';
import { fileNotFound } from '../files/files.service';
import { BATCH_ENDPOINTS, toBatchObject } from './batch-object';

const WINDOW_MS = 24 * 3_600_000;

export function batchNotFound(id: string): ApiError {
  return new ApiError(404, 'invalid_request_error', `No batch found with id '${id}'.`, null, 'batch_id');
}

/**
 * POST /v1/batches and the reads and cancel of a batch. Creating one stores it `validating`: the worker reads
 * the input file, stores its lines (or fails the batch with OpenAI's `errors`) and runs them.
 */
@Injectable()
export class BatchesService {
  private readonly windowMs: number;

  constructor(
    private readonly batches: BatchesRepository,
    private readonly files: FilesRepository,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.windowMs = config.BATCH_WINDOW_S === undefined ? WINDOW_MS : config.BATCH_WINDOW_S * 1000;
  }

  async create(key: AuthedKey, raw: unknown): Promise<Record<string, unknown>> {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidRequest('The request body must be a JSON object.');
    const body = raw as Record<string, unknown>;
    const { input_file_id: fileId, endpoint, completion_window: window, metadata } = body;
    if (fileId === undefined || fileId === null) throw invalidRequest("Missing required parameter: 'input_file_id'.", 'input_file_id', 'missing_required_parameter');
    if (typeof fileId !== 'string') throw invalidRequest("Invalid type for 'input_file_id': expected a string.", 'input_file_id', 'invalid_type');
    if (endpoint === undefined || endpoint === null) throw invalidRequest("Missing required parameter: 'endpoint'.", 'endpoint', 'missing_required_parameter');
    if (typeof endpoint !== 'string' || !Object.hasOwn(BATCH_ENDPOINTS, endpoint)) {
      throw invalidRequest(`Invalid value for 'endpoint': supported values are ${Object.keys(BATCH_ENDPOINTS).map((e) => `'${e}'`).join(', ')}.`, 'endpoint', 'invalid_value');
    }
    if (window === undefined || window === null) throw invalidRequest("Missing required parameter: 'completion_window'.", 'completion_window', 'missing_required_parameter');
    if (window !== '24h') throw invalidRequest("Invalid value for 'completion_window': only '24h' is supported.", 'completion_window', 'invalid_value');
    const meta = checkMetadata(metadata);
    const file = await this.files.find(key.orgId, fileId);
    if (file === null) throw fileNotFound(fileId);
    if (file.purpose !== 'batch') throw invalidRequest(`The file ${fileId} was not uploaded with purpose 'batch'.`, 'input_file_id', 'invalid_file_purpose');
    const now = Date.now();
    const row = await this.batches.create({
      id: objectId('batch_'),
      orgId: key.orgId,
      keyId: key.id,
      endpoint,
      inputFileId: fileId,
      completionWindow: window,
      metadata: meta,
      expiresAt: new Date(now + this.windowMs),
    });
    return toBatchObject(row);
  }

  async retrieve(orgId: string, id: string): Promise<Record<string, unknown>> {
    const row = await this.batches.find(orgId, id);
    if (row === null) throw batchNotFound(id);
    return toBatchObject(row);
  }

  async list(orgId: string, q: { limit?: string; after?: string }): Promise<Record<string, unknown>> {
    const limit = q.limit === undefined ? 20 : Number(q.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw invalidRequest(`Invalid 'limit': expected an integer between 1 and 100.`, 'limit', 'integer_out_of_range');
    const rows = await this.batches.list(orgId, limit, q.after);
    const data = rows.slice(0, limit).map(toBatchObject);
    return { object: 'list', data, first_id: data[0]?.id ?? null, last_id: data[data.length - 1]?.id ?? null, has_more: rows.length > limit };
  }

  async cancel(orgId: string, id: string): Promise<Record<string, unknown>> {
    const row = await this.batches.requestCancel(orgId, id);
    if (row === null) throw batchNotFound(id);
    if (row.status !== 'cancelling' && row.status !== 'cancelled') {
      throw new ApiError(409, 'invalid_request_error', `Cannot cancel a batch with status '${row.status}'.`, null, null);
    }
    return toBatchObject(row);
  }
}

/** OpenAI's metadata: at most 16 string pairs, keys up to 64 characters, values up to 512. */
function checkMetadata(v: unknown): Record<string, string> | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw invalidRequest("Invalid type for 'metadata': expected an object.", 'metadata', 'invalid_type');
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > 16) throw invalidRequest("Invalid 'metadata': at most 16 keys.", 'metadata', 'invalid_value');
  for (const [k, val] of entries) {
    if (k.length > 64) throw invalidRequest("Invalid 'metadata': keys are at most 64 characters.", 'metadata', 'invalid_value');
    if (typeof val !== 'string' || val.length > 512) throw invalidRequest("Invalid 'metadata': values are strings of at most 512 characters.", 'metadata', 'invalid_value');
  }
  return Object.fromEntries(entries) as Record<string, string>;
}
