import { AfterFailure, afterFailure, AttemptFailure, failureOf, implicatesBody } from './failure-policy';

const facts = (failure: AttemptFailure, extra: Partial<{ status: number; clientReceived: boolean; sentFailures: number }> = {}) =>
  afterFailure({ failure, status: 0, clientReceived: false, sentFailures: 0, ...extra });

describe('afterFailure: the one decision after a failed attempt', () => {
  it('moves a request nothing reached the client of to another engine for lost, unreached, timed-out and cut-short engines and 5xx', () => {
    for (const f of [AttemptFailure.Unsent, AttemptFailure.Lost, AttemptFailure.Timeout, AttemptFailure.Incomplete]) {
      expect(facts(f)).toBe(AfterFailure.Retry);
    }
    expect(facts(AttemptFailure.Status, { status: 500 })).toBe(AfterFailure.Retry);
    expect(facts(AttemptFailure.Status, { status: 503 })).toBe(AfterFailure.Retry);
  });

  it("answers the engine's 4xx and unknown failures at once: another engine would say the same", () => {
    expect(facts(AttemptFailure.Status, { status: 400 })).toBe(AfterFailure.Answer);
    expect(facts(AttemptFailure.Status, { status: 429 })).toBe(AfterFailure.Answer);
    expect(facts(AttemptFailure.Broken)).toBe(AfterFailure.Answer);
  });

  it('never retries once bytes reached the client: the response is cut', () => {
    for (const f of [AttemptFailure.Lost, AttemptFailure.Incomplete, AttemptFailure.Broken, AttemptFailure.Timeout]) {
      expect(facts(f, { clientReceived: true })).toBe(AfterFailure.Cut);
    }
  });

  it('stops at the second engine a request lost after sending it, whatever else holds', () => {
    expect(facts(AttemptFailure.Lost, { sentFailures: 1 })).toBe(AfterFailure.Retry);
    expect(facts(AttemptFailure.Lost, { sentFailures: 2 })).toBe(AfterFailure.Poisoned);
    expect(facts(AttemptFailure.Timeout, { sentFailures: 2, clientReceived: true })).toBe(AfterFailure.Poisoned);
  });

  it('classifies undici codes; only failures after sending implicate the body', () => {
    expect(failureOf('ECONNREFUSED')).toBe(AttemptFailure.Unsent);
    expect(failureOf('UND_ERR_CONNECT_TIMEOUT')).toBe(AttemptFailure.Unsent);
    expect(failureOf('ECONNRESET')).toBe(AttemptFailure.Lost);
    expect(failureOf('UND_ERR_SOCKET')).toBe(AttemptFailure.Lost);
    expect(failureOf('UND_ERR_HEADERS_TIMEOUT')).toBe(AttemptFailure.Timeout);
    expect(failureOf('UND_ERR_ABORTED')).toBe(AttemptFailure.Broken);
    expect(implicatesBody(AttemptFailure.Lost)).toBe(true);
    expect(implicatesBody(AttemptFailure.Timeout)).toBe(true);
    expect(implicatesBody(AttemptFailure.Unsent)).toBe(false);
    expect(implicatesBody(AttemptFailure.Status)).toBe(false);
  });
});
