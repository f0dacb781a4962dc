import { AUDIO_ADAPTERS, audioUsage } from './audio-adapter';
import { wavDurationS } from './wav-duration';

/** A 16-bit mono PCM WAV header for `seconds` at `rate` (the samples themselves are not needed). */
function wavHeader(seconds: number, rate = 16_000): Buffer {
  const data = Math.round(seconds * rate) * 2;
  const b = Buffer.alloc(44);
  b.write('RIFF', 0, 'latin1');
  b.writeUInt32LE(36 + data, 4);
  b.write('WAVEfmt ', 8, 'latin1');
  b.writeUInt32LE(16, 16);
  b.writeUInt16LE(1, 20);
  b.writeUInt16LE(1, 22);
  b.writeUInt32LE(rate, 24);
  b.writeUInt32LE(rate * 2, 28);
  b.writeUInt16LE(2, 32);
  b.writeUInt16LE(16, 34);
  b.write('data', 36, 'latin1');
  b.writeUInt32LE(data, 40);
  return b;
}

describe('audio usage', () => {
  it("reads vLLM's usage by duration, OpenAI's token usage, and a verbose answer's duration", () => {
    expect(audioUsage(null, '{"text":" a b","usage":{"type":"duration","seconds":3}}')).toEqual({ prompt: 0, completion: 0, cached: 0, audioSeconds: 3 });
    expect(audioUsage(null, '{"text":"x","usage":{"type":"duration","seconds":2.2}}')).toMatchObject({ audioSeconds: 3 });
    expect(audioUsage(null, '{"text":"x","usage":{"type":"tokens","input_tokens":14,"output_tokens":45,"total_tokens":59}}')).toEqual({ prompt: 14, completion: 45, cached: 0 });
    // vLLM's verbose answers type duration as a string; OpenAI's as a number
    expect(audioUsage('{"duration":"1.5","language":"en","text":" lorem","segments":[', '...]}')).toEqual({ prompt: 0, completion: 0, cached: 0, audioSeconds: 2 });
    expect(audioUsage('{"task":"transcribe","language":"english","duration":8.47,"text":"x"}', '...')).toMatchObject({ audioSeconds: 9 });
    expect(audioUsage(null, '{"text":" lorem"}')).toBeNull();
    expect(audioUsage(null, 'plain text, no usage')).toBeNull();
  });

  it("reads a WAV header's duration, capped by the bytes the file has", () => {
    expect(wavDurationS(wavHeader(2.5), 44 + 80_000)).toBeCloseTo(2.5, 9);
    expect(wavDurationS(wavHeader(10), 44 + 32_000)).toBe(1);
    expect(wavDurationS(Buffer.from('ID3\u0003 an mp3'), 1000)).toBeNull();
    expect(wavDurationS(wavHeader(1).subarray(0, 30), 44)).toBeNull();
  });

  it('routes both operations to the audio API of the tiers file and their vLLM paths', () => {
    expect(AUDIO_ADAPTERS.transcriptions).toMatchObject({ api: 'audio', upstreamPath: '/v1/audio/transcriptions', kind: 'transcriptions' });
    expect(AUDIO_ADAPTERS.translations).toMatchObject({ api: 'audio', upstreamPath: '/v1/audio/translations', kind: 'translations' });
  });
});
