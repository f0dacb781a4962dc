/**
 * The duration in seconds of a RIFF/WAVE file from its first bytes (the `fmt ` chunk's byte rate and the `data`
 * chunk's size, capped by `fileBytes`, the file's length), or null when they are not a WAV header. Never reads samples.
 */
export function wavDurationS(head: Buffer, fileBytes: number): number | null {
  if (head.length < 12 || head.toString('latin1', 0, 4) !== 'RIFF' || head.toString('latin1', 8, 12) !== 'WAVE') return null;
  let pos = 12;
  let byteRate = 0;
  while (pos + 8 <= head.length) {
    const id = head.toString('latin1', pos, pos + 4);
    const size = head.readUInt32LE(pos + 4);
    const body = pos + 8;
    if (id === 'fmt ') {
      if (body + 12 > head.length) return null;
      byteRate = head.readUInt32LE(body + 8);
    } else if (id === 'data') {
      if (byteRate === 0) return null;
      return Math.min(size, Math.max(0, fileBytes - body)) / byteRate;
    }
    pos = body + size + (size % 2);
  }
  return null;
}
