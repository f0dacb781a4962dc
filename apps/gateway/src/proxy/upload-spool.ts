import { createHash, randomBytes } from 'node:crypto';
import { close, openSync, read, readSync, unlinkSync, write } from 'node:fs';
import { join } from 'node:path';

/** Bytes read from the spool file per chunk of a replay. */
const READ_CHUNK = 64 * 1024;

/**
 * An uploaded file as it arrives, kept so that it can be sent to an engine while it still arrives and sent again
 * (a retry on another replica) from its first byte: its first `memoryBytes` in memory, the rest in a temp file that
 * is unlinked as soon as it is opened (so nothing is left on disk, even by a crash; the space is freed when the file
 * is closed). Any number of readers ({@link chunks}) follow the writer, each from byte 0, waiting for bytes not
 * written yet. One writer, appending in order ({@link append}, awaited).
 */
export class UploadSpool {
  private readonly memory: Buffer[] = [];
  private memoryLength = 0;
  private fd = -1;
  /** Bytes appended and readable (memory, then file writes that completed). */
  private length = 0;
  private ended = false;
  private error: Error | null = null;
  private released = false;
  /** File reads and writes in flight: the descriptor is closed only once none is (a reused one must never be touched). */
  private busy = 0;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly dir: string,
    private readonly memoryBytes: number,
  ) {}

  /** Bytes appended so far. */
  get size(): number {
    return this.length;
  }

  /** Whether every byte is in (the upload ended without error). */
  get complete(): boolean {
    return this.ended && this.error === null;
  }

  /** Whether any byte went to disk. */
  get onDisk(): boolean {
    return this.fd >= 0;
  }

  /** Appends `chunk`; resolves once it is readable (at once while it fits in memory). */
  append(chunk: Buffer): Promise<void> | void {
    if (this.released || this.error !== null || this.ended) return;
    if (this.fd < 0 && this.memoryLength + chunk.length <= this.memoryBytes) {
      this.memory.push(chunk);
      this.memoryLength += chunk.length;
      this.length += chunk.length;
      this.wake();
      return;
    }
    if (this.fd < 0) {
      const path = join(this.dir, `spot-upload-${randomBytes(12).toString('hex')}`);
      this.fd = openSync(path, 'wx+', 0o600);
      unlinkSync(path);
    }
    const at = this.length - this.memoryLength;
    this.busy++;
    return new Promise((resolve, reject) => {
      const writeFrom = (offset: number): void => {
        write(this.fd, chunk, offset, chunk.length - offset, at + offset, (err, written) => {
          if (!err && offset + written < chunk.length && !this.released) return writeFrom(offset + written);
          this.busy--;
          this.closeIfDone();
          if (err) {
            this.fail(err);
            reject(err);
            return;
          }
          if (!this.released) {
            this.length += chunk.length;
            this.wake();
          }
          resolve();
        });
      };
      writeFrom(0);
    });
  }

  /** Every byte is in. */
  end(): void {
    if (this.ended || this.error !== null) return;
    this.ended = true;
    this.wake();
  }

  /** The upload broke (or was refused): readers throw `err` at their next chunk. */
  fail(err: Error): void {
    if (this.error !== null) return;
    this.error = err;
    this.wake();
  }

  /** Frees the memory and the file (when no read is in flight); readers that go on throw. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.error ??= new Error('the upload was released');
    this.memory.length = 0;
    this.wake();
    this.closeIfDone();
  }

  /** The first `n` bytes (or fewer, if fewer are in or in memory): what a file's header is read from. */
  head(n: number): Buffer {
    const out: Buffer[] = [];
    let have = 0;
    for (const b of this.memory) {
      if (have >= n) break;
      out.push(have + b.length > n ? b.subarray(0, n - have) : b);
      have += b.length;
    }
    return Buffer.concat(out);
  }

  /** SHA-256 of the bytes in (read synchronously: only for the rare poisoned-request check). */
  digest(): string {
    const hash = createHash('sha256');
    for (const b of this.memory) hash.update(b);
    if (this.fd >= 0 && !this.released) {
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      const fileBytes = this.length - this.memoryLength;
      for (let pos = 0; pos < fileBytes; ) {
        const n = readSync(this.fd, buf, 0, Math.min(READ_CHUNK, fileBytes - pos), pos);
        if (n <= 0) break;
        hash.update(buf.subarray(0, n));
        pos += n;
      }
    }
    return hash.digest('hex');
  }

  /** What a request body's fingerprint sees of the file (JSON.stringify calls this). */
  toJSON(): { bytes: number; sha256: string } {
    return { bytes: this.length, sha256: this.digest() };
  }

  /** The bytes from the first one, as they become readable; ends when the upload has, throws if it broke. */
  async *chunks(): AsyncGenerator<Buffer> {
    let pos = 0;
    for (;;) {
      if (this.error !== null) throw this.error;
      if (pos < this.length) {
        const chunk = pos < this.memoryLength ? this.fromMemory(pos) : await this.fromFile(pos - this.memoryLength, Math.min(READ_CHUNK, this.length - pos));
        pos += chunk.length;
        yield chunk;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private fromMemory(pos: number): Buffer {
    let at = 0;
    for (const b of this.memory) {
      if (pos < at + b.length) return pos === at ? b : b.subarray(pos - at);
      at += b.length;
    }
    throw new Error(`spool position ${pos} is past its memory`);
  }

  private fromFile(pos: number, n: number): Promise<Buffer> {
    if (this.released || this.fd < 0) return Promise.reject(this.error ?? new Error('the upload was released'));
    this.busy++;
    const buf = Buffer.allocUnsafe(n);
    return new Promise((resolve, reject) => {
      read(this.fd, buf, 0, n, pos, (err, bytes) => {
        this.busy--;
        this.closeIfDone();
        if (err) reject(err);
        else if (bytes === 0) reject(new Error('the spool file is shorter than what was written to it'));
        else resolve(bytes === n ? buf : buf.subarray(0, bytes));
      });
    });
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private closeIfDone(): void {
    if (!this.released || this.busy > 0 || this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    close(fd, () => undefined);
  }
}
