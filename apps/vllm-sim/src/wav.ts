/** What the sim reads of a WAV file: its header, never its samples. */
export interface WavInfo {
  readonly channels: number;
  readonly sampleRate: number;
  readonly byteRate: number;
  /** Seconds: the data chunk's bytes over the byte rate. */
  readonly durationS: number;
}

export class WavError extends Error {}

/**
 * Parses a RIFF/WAVE header (the `fmt ` and `data` chunks). A data chunk longer than the file (a header written
 * before the length was known) counts what is there.
 */
export function parseWav(buf: Buffer): WavInfo {
  if (buf.length < 12 || buf.toString('latin1', 0, 4) !== 'RIFF' || buf.toString('latin1', 8, 12) !== 'WAVE') {
    throw new WavError('not a RIFF/WAVE file');
  }
  let pos = 12;
  let fmt: { channels: number; sampleRate: number; byteRate: number } | undefined;
  while (pos + 8 <= buf.length) {
    const id = buf.toString('latin1', pos, pos + 4);
    const size = buf.readUInt32LE(pos + 4);
    const body = pos + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + 16 > buf.length) throw new WavError('truncated fmt chunk');
      fmt = { channels: buf.readUInt16LE(body + 2), sampleRate: buf.readUInt32LE(body + 4), byteRate: buf.readUInt32LE(body + 8) };
      if (fmt.channels === 0 || fmt.sampleRate === 0 || fmt.byteRate === 0) throw new WavError('fmt chunk with a zero rate or no channels');
    } else if (id === 'data') {
      if (!fmt) throw new WavError('data chunk before the fmt chunk');
      const bytes = Math.min(size, buf.length - body);
      return { ...fmt, durationS: bytes / fmt.byteRate };
    }
    // Chunks are padded to an even size.
    pos = body + size + (size % 2);
  }
  throw new WavError(fmt ? 'no data chunk' : 'no fmt chunk');
}

/** A silent 16-bit mono PCM WAV of `seconds` at `sampleRate` (for tests and demos). */
export function silentWav(seconds: number, sampleRate = 16000): Buffer {
  const data = Math.round(seconds * sampleRate) * 2;
  const buf = Buffer.alloc(44 + data);
  buf.write('RIFF', 0, 'latin1');
  buf.writeUInt32LE(36 + data, 4);
  buf.write('WAVEfmt ', 8, 'latin1');
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(sampleRate, 24);
  buf.writeUInt32LE(sampleRate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36, 'latin1');
  buf.writeUInt32LE(data, 40);
  return buf;
}
