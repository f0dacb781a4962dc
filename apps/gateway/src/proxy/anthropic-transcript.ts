import { StreamTranscript, TextField } from './stream-transcript';

/**
 * What an Anthropic Messages stream delivered to its client, kept so that it can be continued on another engine:
 * the text of its text block (from the `text_delta`s, copied as their escaped bytes like a chat stream's), the
 * message of `message_start` (its id, model and usage the client read), and where the block stands. Only a stream
 * whose one content block is text can be continued: a tool_use or thinking block, or a second block, marks it as
 * one that cannot.
 */
export class MessagesTranscript extends StreamTranscript {
  /** The message of `message_start` as the client read it, or null before. */
  message: Record<string, unknown> | null = null;
  /** The index of the text block (-1 until its `content_block_start`). */
  blockIndex = -1;
  /** The text block's `content_block_stop` reached the client (the text is complete). */
  blockStopped = false;
  /** `message_delta` reached the client (the message is complete but for its `message_stop`). */
  messageDelta = false;

  constructor() {
    super(TextField.EventText);
  }

  /** `content_block_start`: the stream can go on only from one text block. */
  blockStarted(block: unknown, index: unknown): void {
    if (this.blockIndex >= 0 || (block as { type?: unknown } | null)?.type !== 'text' || typeof index !== 'number') this.honest = false;
    else this.blockIndex = index;
  }

  /** `content_block_stop` of block `index`. */
  blockEnded(index: unknown): void {
    if (index !== this.blockIndex) return;
    this.blockStopped = true;
    this.finished = true;
  }
}
