/** Helpers for tests that talk to apps/vllm-sim (or any SSE endpoint) at the byte level. */

/** POSTs JSON and returns the response (no SDK in between). */
export function postJson(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    ...init,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(init.headers as Record<string, string> | undefined) },
    body: JSON.stringify(body),
  });
}

/** Splits an SSE body into its `data:` payloads, checking that every event is exactly `data: ...\n\n`. */
export function sseData(text: string): string[] {
  if (!text.endsWith('\n\n')) throw new Error(`SSE body does not end with a blank line: ${JSON.stringify(text.slice(-40))}`);
  return text
    .slice(0, -2)
    .split('\n\n')
    .map((event) => {
      if (!event.startsWith('data: ') || event.includes('\n')) throw new Error(`not a single-line data event: ${event}`);
      return event.slice(6);
    });
}

/** The JSON chunks of an SSE body (everything but `[DONE]`). */
export function sseJson<T = Record<string, unknown>>(text: string): T[] {
  return sseData(text)
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as T);
}

/** Polls `check` until it returns true or `timeoutMs` passes (then throws with `what`). */
export async function until(check: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
