import { GatewayMetrics } from './gateway-metrics';

const value = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('GatewayMetrics: per-request counters', () => {
  it('counts requests and tokens in plain numbers and exports each count once, at collection', async () => {
    const m = new GatewayMetrics();
    m.countRequest('chat', 200);
    m.countRequest('chat', 200);
    m.countRequest('chat', 429);
    m.countRequest('embeddings', 200);
    m.countTokens('llama', 'spot', 10, 16);
    m.countTokens('llama', 'spot', 5, 0);
    m.countTokens('llama', 'on-demand', 0, 7);
    let text = await m.text();
    expect(value(text, 'gateway_requests_total{route="chat",status="200"}')).toBe(2);
    expect(value(text, 'gateway_requests_total{route="chat",status="429"}')).toBe(1);
    expect(value(text, 'gateway_requests_total{route="embeddings",status="200"}')).toBe(1);
    expect(value(text, 'gateway_tokens_total{model="llama",tier="spot",direction="input"}')).toBe(15);
    expect(value(text, 'gateway_tokens_total{model="llama",tier="spot",direction="output"}')).toBe(16);
    expect(value(text, 'gateway_tokens_total{model="llama",tier="on-demand",direction="output"}')).toBe(7);
    expect(value(text, 'gateway_tokens_total{model="llama",tier="on-demand",direction="input"}')).toBeUndefined();

    // a second scrape adds only what was counted since the first
    m.countRequest('chat', 200);
    m.countTokens('llama', 'spot', 1, 1);
    text = await m.text();
    expect(value(text, 'gateway_requests_total{route="chat",status="200"}')).toBe(3);
    expect(value(text, 'gateway_requests_total{route="chat",status="429"}')).toBe(1);
    expect(value(text, 'gateway_tokens_total{model="llama",tier="spot",direction="input"}')).toBe(16);
    expect(value(text, 'gateway_tokens_total{model="llama",tier="spot",direction="output"}')).toBe(17);
  });

  it('reads the usage recorder at collection time', async () => {
    const m = new GatewayMetrics();
    let written = 3;
    m.observeRecorder(() => ({ pending: 1, spooledEvents: 2, written, failures: 0 }));
    expect(value(await m.text(), 'gateway_usage_events_written')).toBe(3);
    written = 5;
    expect(value(await m.text(), 'gateway_usage_events_written')).toBe(5);
  });
});
