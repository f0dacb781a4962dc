import { ModelCatalog } from './model-catalog';
import { noticesFor, noticeTargets, parseNoticeMessage, readNoticeAnswer } from './preemption-notice';
import { parseTiersFile } from './tiers-file';

describe('preemption notices', () => {
  const now = Date.parse('2026-12-01T12:00:00.000Z');

  it("reads a notice URL's answer the way AWS, GCP and a plain sidecar word it", () => {
    expect(readNoticeAnswer(404, '<html>404 - Not Found</html>', now, 30)).toEqual({ kind: 'none' });
    expect(readNoticeAnswer(200, '{"action": "terminate", "time": "2026-12-01T12:02:00Z"}', now, 30)).toEqual({
      kind: 'notice',
      deadlineAt: Date.parse('2026-12-01T12:02:00Z'),
    });
    expect(readNoticeAnswer(200, '{"action":"stop","time":"2026-12-01T13:00:00+01:00"}', now, 30)).toEqual({ kind: 'notice', deadlineAt: now });
    expect(readNoticeAnswer(200, '{"deadline_s": 12.5}', now, 30)).toEqual({ kind: 'notice', deadlineAt: now + 12_500 });
    expect(readNoticeAnswer(200, 'TRUE', now, 30)).toEqual({ kind: 'notice', deadlineAt: now + 30_000 });
    expect(readNoticeAnswer(200, 'true\n', now, 45)).toEqual({ kind: 'notice', deadlineAt: now + 45_000 });
    expect(readNoticeAnswer(200, 'FALSE', now, 30)).toEqual({ kind: 'none' });
    // a 200 without a time: the default deadline
    expect(readNoticeAnswer(200, '{"action":"terminate"}', now, 30)).toEqual({ kind: 'notice', deadlineAt: now + 30_000 });
  });

  it('changes nothing on an answer that says neither (a failing sidecar says nothing about the machine)', () => {
    expect(readNoticeAnswer(500, 'boom', now, 30)).toMatchObject({ kind: 'unknown', why: 'HTTP 500' });
    expect(readNoticeAnswer(200, 'maybe', now, 30)).toMatchObject({ kind: 'unknown' });
    expect(readNoticeAnswer(200, '{"time":"tomorrow"}', now, 30)).toMatchObject({ kind: 'unknown' });
    expect(readNoticeAnswer(200, '{"deadline_s":-1}', now, 30)).toMatchObject({ kind: 'unknown' });
    expect(readNoticeAnswer(200, '[1]', now, 30)).toMatchObject({ kind: 'unknown' });
  });

  it("resolves a notice's replicas against the tiers file, naming what is unknown", () => {
    const catalog = new ModelCatalog(
      parseTiersFile(
        'tiers:\n  - name: spot\n    kind: spot\n    endpoints: [http://a:1, http://b:2/]\n    models: [{ id: m, price: { input_per_mtok: 1, output_per_mtok: 1 } }]\n',
        't.yaml',
      ),
    );
    expect(noticeTargets(catalog, 'spot')).toEqual({ ok: true, endpoints: ['http://a:1', 'http://b:2'] });
    expect(noticeTargets(catalog, 'spot', 'http://b:2/')).toEqual({ ok: true, endpoints: ['http://b:2'] });
    expect(noticeTargets(catalog, 'gpu')).toMatchObject({ ok: false, unknown: 'tier' });
    expect(noticeTargets(catalog, 'spot', 'http://c:3')).toMatchObject({ ok: false, unknown: 'endpoint', message: expect.stringContaining('http://a:1, http://b:2') });
    expect(noticesFor('spot', ['http://a:1'], 1.5, 'cli', 'cli h', now)).toEqual([
      { tier: 'spot', endpoint: 'http://a:1', deadlineAt: now + 1_500, noticedAt: now, source: 'cli', by: 'cli h' },
    ]);
  });

  it('takes only well-formed messages from the channel', () => {
    const notice = { tier: 't', endpoint: 'http://a:1', deadlineAt: now, noticedAt: now, source: 'admin', by: 'gateway x' };
    expect(parseNoticeMessage(JSON.stringify({ tier: 't', endpoint: 'http://a:1', notice, by: 'gateway x' }))).toMatchObject({ notice });
    expect(parseNoticeMessage(JSON.stringify({ tier: 't', endpoint: 'http://a:1', notice: null, by: 'cli' }))).toMatchObject({ notice: null });
    expect(parseNoticeMessage(JSON.stringify({ tier: 't', endpoint: 'http://a:1', notice: { ...notice, source: 'aliens' }, by: 'x' }))).toBeNull();
    expect(parseNoticeMessage('not json')).toBeNull();
  });
});
