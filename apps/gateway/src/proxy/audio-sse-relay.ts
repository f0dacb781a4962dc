import type { RelayWrite } from './protocol-adapter';
import { classifyEvent, eventEnd, FrameKind, parseFrame, rewriteErrorFrame } from './sse-frames';
import { SseRelayBase } from './sse-relay-base';
import { usageFromObject } from './token-usage';

/**
 * The relay of one engine attempt's speech-to-text stream, from vLLM's framing to OpenAI's: vLLM streams
 * chat-like `transcription.chunk` (`translation.chunk`) chunks (`choices[0].delta.content`), a usage chunk
 * (`choices: []`, asked for with `stream_include_usage`) and `data: [DONE]`; OpenAI's clients read
 * `transcript.text.delta` events (`{"type","delta"}`) and one `transcript.text.done` (`{"type","text","usage"}`,
 * usage as `{"type":"tokens","input_tokens","output_tokens","total_tokens"}`) that ends the stream. So each content
 * chunk becomes a delta event, the usage chunk is read (the tokens are metered from it), and `[DONE]` becomes the done
 * event with the whole text and that usage. Error frames go out in OpenAI's envelope; after one, no done event follows
 * (the transcript is not whole). One per attempt.
 */
export class AudioSseRelay extends SseRelayBase {
  private text = '';

  /** Relays one read of the engine's body; an event cut at the end waits for the next read. */
  push(chunk: Buffer, write: RelayWrite): void {
    const buf = this.joined(chunk);
    let eventStart = 0;
    let out = '';
    let sep: number;
    while ((sep = eventEnd(buf, eventStart)) !== -1) {
      const next = sep + 2;
      const kind = classifyEvent(buf, eventStart, sep);
      if (kind === FrameKind.Done) {
        this.sawDone = true;
        if (this.errorFrames === 0) out += this.doneEvent();
      } else if (kind === FrameKind.Error) {
        if (out !== '') write(Buffer.from(out));
        out = '';
        const { frame, status } = rewriteErrorFrame(buf, eventStart, sep);
        this.errorFrameStatus = status;
        this.errorFrames++;
        write(frame);
      } else if (kind === FrameKind.Content || kind === FrameKind.Usage) {
        const payload = parseFrame(buf, eventStart, sep);
        const choices = payload?.choices;
        if (kind === FrameKind.Usage) {
          const usage = usageFromObject(payload?.usage);
          if (usage !== null) this.usage = usage;
        }
        const delta = Array.isArray(choices) ? deltaOf(choices[0]) : null;
        if (delta !== null) {
          this.contentEvents++;
          this.text += delta;
          out += `data: ${JSON.stringify({ type: 'transcript.text.delta', delta })}\n\n`;
        }
      }
      // comments and anything else of the engine's framing: not OpenAI's, dropped
      eventStart = next;
    }
    if (out !== '') write(Buffer.from(out));
    this.keepRest(buf, eventStart);
  }

  /** The engine's body ended: an unterminated last event is not OpenAI's framing, so nothing is passed on. */
  override end(_write: RelayWrite): void {
    this.joined(Buffer.alloc(0));
  }

  /** The text relayed so far (what a cut stream delivered). */
  get transcript(): string {
    return this.text;
  }

  private doneEvent(): string {
    const done: Record<string, unknown> = { type: 'transcript.text.done', text: this.text };
    const u = this.usage;
    if (u !== null) done.usage = { type: 'tokens', input_tokens: u.prompt, output_tokens: u.completion, total_tokens: u.prompt + u.completion };
    return `data: ${JSON.stringify(done)}\n\n`;
  }
}

function deltaOf(choice: unknown): string | null {
  if (choice === null || typeof choice !== 'object') return null;
  const delta = (choice as { delta?: { content?: unknown } }).delta;
  const content = delta?.content;
  return typeof content === 'string' && content !== '' ? content : null;
}
