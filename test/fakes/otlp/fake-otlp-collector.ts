import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { decodeTraceRequest } from './otlp-protobuf';

/** OTLP span kinds (the proto's numbering). */
export const SPAN_KIND = { internal: 1, server: 2, client: 3, producer: 4, consumer: 5 } as const;
/** OTLP status codes. */
export const STATUS_CODE = { unset: 0, ok: 1, error: 2 } as const;

/** A received span, with its attributes and its resource's as plain values. */
export interface CollectedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  readonly kind: number;
  readonly startNs: bigint;
  readonly endNs: bigint;
  readonly attributes: Readonly<Record<string, unknown>>;
  readonly status: { readonly code: number; readonly message?: string };
  readonly events: ReadonlyArray<{ readonly name: string; readonly attributes: Readonly<Record<string, unknown>> }>;
  readonly resource: Readonly<Record<string, unknown>>;
  readonly scope: string;
}

/** One POST the collector received. */
export interface ExportRequest {
  readonly path: string;
  readonly contentType: string;
  readonly headers: IncomingMessage['headers'];
  readonly bytes: number;
  readonly spans: number;
}

export interface FakeOtlpCollector {
  /** e.g. http://127.0.0.1:PORT: the OTEL_EXPORTER_OTLP_ENDPOINT (spans go to /v1/traces). */
  readonly url: string;
  readonly requests: readonly ExportRequest[];
  readonly spans: readonly CollectedSpan[];
  /** The next `count` export requests get `status` (a collector in trouble: 503, 429...). */
  failNext(count: number, status: number): void;
  /** Resolves once spans matching `accept` are in (polls), or rejects after `timeoutMs` with what arrived. */
  waitFor(accept: (spans: readonly CollectedSpan[]) => boolean, timeoutMs?: number): Promise<readonly CollectedSpan[]>;
  reset(): void;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

/** An OTLP/JSON AnyValue as a plain value. */
function plain(v: Json | undefined): unknown {
  if (v === undefined) return undefined;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  if ('intValue' in v) return Number(v.intValue);
  if ('doubleValue' in v) return Number(v.doubleValue);
  if ('arrayValue' in v) return ((v.arrayValue as { values?: Json[] }).values ?? []).map(plain);
  if ('kvlistValue' in v) return attributes((v.kvlistValue as { values?: Json[] }).values);
  if ('bytesValue' in v) return v.bytesValue;
  return undefined;
}

function attributes(list: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const kv of (list as Array<{ key: string; value?: Json }> | undefined) ?? []) out[kv.key] = plain(kv.value);
  return out;
}

/** OTLP/JSON ids are hex; the JSON exporter of some SDKs sends base64: either is read. */
function hexId(v: unknown): string {
  if (typeof v !== 'string' || v === '') return '';
  return /^[0-9a-f]+$/i.test(v) ? v.toLowerCase() : Buffer.from(v, 'base64').toString('hex');
}

function collect(request: { resourceSpans?: Json[] }): CollectedSpan[] {
  const out: CollectedSpan[] = [];
  for (const rs of request.resourceSpans ?? []) {
    const resource = attributes((rs.resource as Json | undefined)?.attributes);
    for (const ss of (rs.scopeSpans as Json[] | undefined) ?? []) {
      const scope = String((ss.scope as Json | undefined)?.name ?? '');
      for (const s of (ss.spans as Json[] | undefined) ?? []) {
        const status = (s.status as { code?: number; message?: string } | undefined) ?? {};
        out.push({
          traceId: hexId(s.traceId),
          spanId: hexId(s.spanId),
          parentSpanId: hexId(s.parentSpanId),
          name: String(s.name),
          kind: Number(s.kind ?? 0),
          startNs: BigInt(String(s.startTimeUnixNano ?? 0)),
          endNs: BigInt(String(s.endTimeUnixNano ?? 0)),
          attributes: attributes(s.attributes),
          status: { code: Number(status.code ?? 0), message: status.message },
          events: ((s.events as Json[] | undefined) ?? []).map((e) => ({ name: String(e.name), attributes: attributes(e.attributes) })),
          resource,
          scope,
        });
      }
    }
  }
  return out;
}

/**
 * A stand-in for an OpenTelemetry Collector's OTLP/HTTP receiver: accepts `POST /v1/traces` in protobuf
 * (`application/x-protobuf`, what the proto exporter sends) or JSON (`application/json`), gzipped or not, answers
 * as the collector does (200 with an empty ExportTraceServiceResponse in the request's encoding; 400 for a body
 * it cannot decode, 415 for another type, 404 for another path), and keeps every span it got.
 */
export async function startFakeOtlpCollector(): Promise<FakeOtlpCollector> {
  const requests: ExportRequest[] = [];
  const spans: CollectedSpan[] = [];
  let failing = 0;
  let failStatus = 503;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method !== 'POST' || path !== '/v1/traces') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('404 page not found');
        return;
      }
      const contentType = (req.headers['content-type'] ?? '').split(';')[0].trim();
      let body = Buffer.concat(chunks);
      if (failing > 0) {
        failing--;
        res.writeHead(failStatus, { 'content-type': 'application/json', 'retry-after': '0' }).end('{"code":14,"message":"unavailable"}');
        return;
      }
      let got: CollectedSpan[];
      try {
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        if (contentType === 'application/x-protobuf') got = collect(decodeTraceRequest(body));
        else if (contentType === 'application/json') got = collect(JSON.parse(body.toString('utf8')) as { resourceSpans?: Json[] });
        else {
          res.writeHead(415, { 'content-type': 'text/plain' }).end(`unsupported content type ${contentType}`);
          return;
        }
      } catch (err) {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(`cannot decode the request: ${(err as Error).message}`);
        return;
      }
      requests.push({ path, contentType, headers: req.headers, bytes: body.length, spans: got.length });
      spans.push(...got);
      if (contentType === 'application/json') res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      else res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    spans,
    failNext(count, status) {
      failing = count;
      failStatus = status;
    },
    async waitFor(accept, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!accept(spans)) {
        if (Date.now() > deadline) throw new Error(`the collector did not get the spans awaited; it has: ${spans.map((s) => s.name).join(', ') || 'none'}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return spans;
    },
    reset() {
      requests.length = 0;
      spans.length = 0;
      failing = 0;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
