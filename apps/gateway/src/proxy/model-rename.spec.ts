import { modelRename } from './model-rename';

const ENGINE = 'meta-llama/Llama-3.1-8B-Instruct';
const rename = modelRename(ENGINE, 'llama-test')!;

/** Feeds `body` to a fresh body renamer in reads of `size` bytes. */
function throughBody(body: string, size: number): string {
  const r = rename.body();
  const out: Buffer[] = [];
  const bytes = Buffer.from(body);
  for (let i = 0; i < bytes.length; i += size) out.push(r.push(bytes.subarray(i, i + size)));
  const rest = r.end();
  if (rest !== null) out.push(rest);
  return Buffer.concat(out).toString();
}

describe('ModelRename', () => {
  it('is not made when the names agree: nothing to do', () => {
    expect(modelRename('m', 'm')).toBeNull();
    expect(modelRename(ENGINE, 'llama-test')).toBe(rename);
  });

  it("renames every `\"model\":<engine name>` of whole SSE events, and returns the same bytes when there is none", () => {
    const chunk = (n: number) => `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"${ENGINE}","choices":[{"index":0,"delta":{"content":"t${n}"}}]}\n\n`;
    const events = Buffer.from(chunk(1) + chunk(2));
    expect(rename.all(events).toString()).toBe((chunk(1) + chunk(2)).replaceAll(`"model":"${ENGINE}"`, '"model":"llama-test"'));
    const delta = Buffer.from('event: response.output_text.delta\ndata: {"delta":" x","sequence_number":5}\n\n');
    expect(rename.all(delta)).toBe(delta);
  });

  it("leaves alone another model's name, a name inside a string, and a key that only starts the same", () => {
    const text = `{"model":"other","content":"say \\"model\\":\\"${ENGINE}\\"","models":"${ENGINE}","model": "${ENGINE}"}`;
    expect(rename.all(Buffer.from(text)).toString()).toBe(`{"model":"other","content":"say \\"model\\":\\"${ENGINE}\\"","models":"${ENGINE}","model": "llama-test"}`);
  });

  it('renames the first match of a body read by read, wherever the reads cut it', () => {
    // a Message: its content comes before its model field
    const body = `{"id":"chatcmpl-1","type":"message","role":"assistant","content":[{"type":"text","text":"${'w '.repeat(40)}"}],"model":"${ENGINE}","usage":{"input_tokens":3,"output_tokens":4}}`;
    const want = body.replace(`"model":"${ENGINE}"`, '"model":"llama-test"');
    for (let size = 1; size <= body.length; size += size < 80 ? 1 : 37) expect(throughBody(body, size)).toBe(want);
    // only the first: a later object of the same shape is the client's own data
    const twice = `{"model":"${ENGINE}","data":[{"model":"${ENGINE}"}]}`;
    expect(throughBody(twice, 5)).toBe(`{"model":"llama-test","data":[{"model":"${ENGINE}"}]}`);
    // no match: the body as it came
    expect(throughBody('{"object":"list","data":[]}', 3)).toBe('{"object":"list","data":[]}');
  });
});
