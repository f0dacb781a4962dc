import { Logger } from '@nestjs/common';
import type { AppConfig } from '@spot/config';
import type { NewStoredResponse, ResponsesRepository, ResponseTurn } from '@spot/db';
import { GatewayMetrics } from '../metrics/gateway-metrics';
import { RESPONSE_BODY_KEEP_MAX, ResponsesAdapter } from './responses-adapter';
import { ResponsesStore } from './responses-store';
import type { AuthedKey } from '../auth/authed-key';

const KEY = { id: '00000000-0000-0000-0000-00000000000a', orgId: '00000000-0000-0000-0000-0000000000b0', allowedModels: null } as unknown as AuthedKey;
const CONFIG = { RESPONSES_RETENTION_DAYS: 30 } as AppConfig;

/** A repository whose insert is held until released, or fails. */
function fakeRepo(fail = false) {
  const rows = new Map<string, NewStoredResponse>();
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => (release = r));
  const repo = {
    insert: async (r: NewStoredResponse) => {
      await held;
      if (fail) throw new Error('connection refused');
      rows.set(r.id, r);
    },
    chain: async (_org: string, id: string): Promise<ResponseTurn[] | null> => {
      const r = rows.get(id);
      return r === undefined ? null : [{ id, input: r.input, output: (r.response.output as unknown[]) ?? [] }];
    },
  } as unknown as ResponsesRepository;
  return { repo, rows, release };
}

function stored(metrics: GatewayMetrics, outcome: string): Promise<number> {
  return metrics.responsesStored.get().then((m) => m.values.find((v) => v.labels.outcome === outcome)?.value ?? 0);
}

describe('ResponsesStore and the Responses keeper', () => {
  beforeAll(() => Logger.overrideLogger(false));

  it('a next turn looked up while its previous write is in flight waits for it instead of answering 404', async () => {
    const { repo, release } = fakeRepo();
    const store = new ResponsesStore(repo, new GatewayMetrics(), CONFIG);
    store.keep({ orgId: KEY.orgId, keyId: KEY.id, model: 'm', previousResponseId: null, input: [{ role: 'user', content: 'hi' }], response: { id: 'resp_1', output: [{ type: 'message' }] }, requestId: 'req_1' });
    const chain = store.chain(KEY.orgId, 'resp_1');
    // held past the miss re-check (150 ms): only waiting on the write itself finds it
    setTimeout(release, 400);
    await expect(chain).resolves.toEqual([{ id: 'resp_1', input: [{ role: 'user', content: 'hi' }], output: [{ type: 'message' }] }]);
  });

  it('a failed write is counted and logged, never thrown; the id is then a 404 for previous_response_id', async () => {
    const { repo, release } = fakeRepo(true);
    const metrics = new GatewayMetrics();
    const store = new ResponsesStore(repo, metrics, CONFIG);
    store.keep({ orgId: KEY.orgId, keyId: KEY.id, model: 'm', previousResponseId: null, input: [], response: { id: 'resp_2', output: [] }, requestId: 'req_2' });
    release();
    await expect(store.chain(KEY.orgId, 'resp_2')).rejects.toMatchObject({ status: 404, code: 'previous_response_not_found', param: 'previous_response_id' });
    expect(await stored(metrics, 'failed')).toBe(1);
  });

  it('the keeper stores the body with the previous id and this input; a body over the bound and store:false keep nothing', async () => {
    const { repo, rows, release } = fakeRepo();
    release();
    const metrics = new GatewayMetrics();
    const adapter = new ResponsesAdapter(new ResponsesStore(repo, metrics, CONFIG));
    const req = adapter.check({ model: 'm', input: 'again', previous_response_id: 'resp_0' }, 64);
    expect(JSON.parse(adapter.upstreamBody(req, 'engine-m'))).toEqual({ model: 'engine-m', input: [{ type: 'message', role: 'user', content: 'again' }], store: false });
    const keeper = adapter.keeper(req, KEY)!;
    expect(keeper.maxBodyBytes).toBe(RESPONSE_BODY_KEEP_MAX);
    keeper.keep('req_3', Buffer.from(JSON.stringify({ id: 'resp_3', object: 'response', previous_response_id: null, output: [] })));
    await new Promise((r) => setImmediate(r));
    expect(rows.get('resp_3')).toMatchObject({ previousResponseId: 'resp_0', input: [{ type: 'message', role: 'user', content: 'again' }], response: { previous_response_id: 'resp_0' }, requestId: 'req_3' });
    keeper.tooLarge('req_4');
    expect(await stored(metrics, 'too_large')).toBe(1);
    expect(adapter.keeper(adapter.check({ model: 'm', input: 'x', store: false }, 10), KEY)).toBeNull();
    expect(() => adapter.check({ model: 'm', input: 'x', store: 'yes' }, 10)).toThrow(/store/);
    expect(() => adapter.check({ model: 'm', input: 'x', background: true }, 10)).toThrow(expect.objectContaining({ status: 400, param: 'background' }));
    expect(() => adapter.check({ model: 'm', input: 'x', conversation: 'conv_1' }, 10)).toThrow(expect.objectContaining({ status: 400, param: 'conversation' }));
    expect(() => adapter.check({ model: 'm', input: 42 }, 10)).toThrow(expect.objectContaining({ status: 400, param: 'input' }));
  });
});
