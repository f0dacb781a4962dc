import { AfterFailure, afterFailure, AttemptFailure, failureOf, implicatesBody, PREEMPTED, SENT_FAILURES_MAX, STALLED, strikesAfter } from './failure-policy';

const facts = (failure: AttemptFailure, extra: Partial<{ status: number; clientReceived: boolean; sentFailures: number; continuable: boolean }> = {}) =>
  afterFailure({ failure, status: 0, clientReceived: false, sentFailures: 0, continuable: false, ...extra });

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

  it('continues a stream of content whose engine was lost, stalled, preempted or sent a 5xx frame after bytes reached the client', () => {
    const mid = { clientReceived: true, continuable: true };
    for (const f of [AttemptFailure.Lost, AttemptFailure.Incomplete, AttemptFailure.Timeout, AttemptFailure.Stalled, AttemptFailure.Preempted, AttemptFailure.ErrorFrame, AttemptFailure.Unsent]) {
      expect(facts(f, mid)).toBe(AfterFailure.Continue);
    }
    expect(facts(AttemptFailure.Status, { ...mid, status: 503 })).toBe(AfterFailure.Continue);
    // a continuation's engine refused it with a 4xx (context length...): another would too
    expect(facts(AttemptFailure.Status, { ...mid, status: 400 })).toBe(AfterFailure.Cut);
    expect(facts(AttemptFailure.Broken, mid)).toBe(AfterFailure.Cut);
    // a tool call, n > 1, logprobs, or continuations used up: cut as before
    expect(facts(AttemptFailure.Lost, { clientReceived: true, continuable: false })).toBe(AfterFailure.Cut);
    // nothing reached the client yet: a plain retry, continuable or not
    expect(facts(AttemptFailure.Stalled, { continuable: true })).toBe(AfterFailure.Retry);
    expect(facts(AttemptFailure.Preempted)).toBe(AfterFailure.Retry);
  });

  it('poisons a body that failed two engines at the same point, never one that made progress in between', () => {
    // before the first byte: no progress is possible, the second loss is the last
    expect(strikesAfter(0, false)).toBe(1);
    expect(strikesAfter(1, false)).toBe(SENT_FAILURES_MAX);
    // a stream lost, continued, and lost again further on: a first strike again (a reclaim wave, not the body)
    expect(strikesAfter(1, true)).toBe(1);
    expect(facts(AttemptFailure.Lost, { clientReceived: true, continuable: true, sentFailures: strikesAfter(1, true) })).toBe(AfterFailure.Continue);
    // lost again where the continuation resumed it, before any new token: the body
    expect(facts(AttemptFailure.Lost, { clientReceived: true, continuable: true, sentFailures: strikesAfter(1, false) })).toBe(AfterFailure.Poisoned);
    expect(implicatesBody(AttemptFailure.Stalled)).toBe(true);
    expect(implicatesBody(AttemptFailure.Preempted)).toBe(false);
    expect(implicatesBody(AttemptFailure.ErrorFrame)).toBe(false);
    expect(failureOf(STALLED)).toBe(AttemptFailure.Stalled);
    expect(failureOf(PREEMPTED)).toBe(AttemptFailure.Preempted);
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
