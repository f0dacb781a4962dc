import type { FastifyReply } from 'fastify';
import type { BatchDownload } from './console-batches.service';

/**
 * `attachment` with the file's name: an ASCII fallback (anything else, quotes and backslashes as `_`) and the
 * exact name as RFC 8187's `filename*`, so that no name a client uploaded can break the header.
 */
export function attachment(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_').slice(0, 200) || 'download';
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(filename).replace(/['()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)}`;
}

/** Sends a batch file as a download, streamed (one chunk row at a time as the client reads). */
export function sendDownload(reply: FastifyReply, d: BatchDownload): void {
  void reply
    .header('content-type', 'application/octet-stream')
    .header('content-length', String(d.bytes))
    .header('content-disposition', attachment(d.filename))
    .header('cache-control', 'no-store')
    .send(d.body);
}
