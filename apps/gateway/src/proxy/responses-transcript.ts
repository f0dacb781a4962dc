import { StreamTranscript, TextField } from './stream-transcript';

/**
 * What a Responses stream delivered to its client, kept so that it can be continued on another engine: the text
 * of its message item (from the `output_text.delta` events, copied as their escaped bytes like a chat stream's),
 * and the few events that shape the stream around it (read as they pass, each once a stream): the Response of
 * `response.created`, the item's id, which of the item's opening and closing events the client has, and the last
 * sequence number it read. Only a stream whose one output item is a message of one output_text part can be
 * continued: a function call, reasoning, a second item or part marks it as one that cannot.
 */
export class ResponsesTranscript extends StreamTranscript {
  /** The Response of `response.created` as the client read it (completed for it), or null before. */
  response: Record<string, unknown> | null = null;
  /** `response.in_progress` reached the client. */
  inProgress = false;
  /** The id of the message item under way (null until its `output_item.added`). */
  itemId: string | null = null;
  /** The item's `content_part.added`, `output_text.done`, `content_part.done`, `output_item.done` reached the client. */
  partAdded = false;
  textDone = false;
  partDone = false;
  itemDone = false;
  /** The sequence_number of the last event the client read (-1: none). */
  sequence = -1;

  constructor() {
    super(TextField.EventDelta);
  }

  /** `response.output_item.added`: the stream can go on only from a message item at output_index 0, the first. */
  itemAdded(item: unknown, outputIndex: unknown): void {
    const it = item as { id?: unknown; type?: unknown } | null;
    if (this.itemId !== null || outputIndex !== 0 || it?.type !== 'message' || typeof it.id !== 'string') this.honest = false;
    else this.itemId = it.id;
  }

  /** `response.content_part.added`: one output_text part, at content_index 0. */
  partOpened(part: unknown, contentIndex: unknown): void {
    if (this.partAdded || contentIndex !== 0 || (part as { type?: unknown } | null)?.type !== 'output_text') this.honest = false;
    else this.partAdded = true;
  }
}
