import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What an {@link OtlpSink} received. */
export interface OtlpSinkCounts {
  requests: number;
  bytes: number;
}

export interface OtlpSink {
  /** The OTEL_EXPORTER_OTLP_ENDPOINT to give the gateway. */
  readonly url: string;
  readonly counts: OtlpSinkCounts;
  close(): Promise<void>;
}

/**
 * The cheapest OTLP/HTTP receiver that is still one: takes `POST /v1/traces`, counts its requests and bytes,
 * answers an empty ExportTraceServiceResponse (200), decodes nothing. For benchmarks of the gateway with tracing on
 * (test/fakes/otlp has the decoding collector the tests use).
 */
export async function startOtlpSink(): Promise<OtlpSink> {
  const counts: OtlpSinkCounts = { requests: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (counts.bytes += c.length));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/v1/traces') counts.requests++;
      res.writeHead(req.url === '/v1/traces' ? 200 : 404, { 'content-type': req.headers['content-type'] ?? 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
