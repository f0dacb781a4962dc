import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UploadSpool } from './upload-spool';

async function all(spool: UploadSpool): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of spool.chunks()) parts.push(c);
  return Buffer.concat(parts);
}

describe('UploadSpool', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'spool-spec-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps the first bytes in memory and the rest in a file that is never visible on disk', async () => {
    const spool = new UploadSpool(dir, 10);
    await spool.append(Buffer.from('0123456789'));
    expect(spool.onDisk).toBe(false);
    await spool.append(Buffer.from('abcdef'));
    await spool.append(Buffer.from('ghij'));
    spool.end();
    expect(spool.onDisk).toBe(true);
    // unlinked at once: nothing in the directory, even while it is in use
    expect(readdirSync(dir)).toEqual([]);
    expect((await all(spool)).toString()).toBe('0123456789abcdefghij');
    expect(spool.head(12).toString()).toBe('0123456789');
    expect(spool.digest()).toBe(createHash('sha256').update('0123456789abcdefghij').digest('hex'));
    spool.release();
    await expect(all(spool)).rejects.toThrow('released');
  });

  it('lets readers follow the writer, each from the first byte', async () => {
    const spool = new UploadSpool(dir, 4);
    const early = all(spool);
    await spool.append(Buffer.from('head'));
    await spool.append(Buffer.from('-body'));
    const late = all(spool);
    await new Promise((r) => setImmediate(r));
    await spool.append(Buffer.from('-tail'));
    spool.end();
    expect((await early).toString()).toBe('head-body-tail');
    expect((await late).toString()).toBe('head-body-tail');
    expect((await all(spool)).toString()).toBe('head-body-tail');
    spool.release();
  });

  it('makes waiting readers throw the upload\'s error, never a clean end', async () => {
    const spool = new UploadSpool(dir, 4);
    await spool.append(Buffer.from('abcdefgh'));
    const reader = all(spool);
    const refused = new Error('too large');
    spool.fail(refused);
    await expect(reader).rejects.toBe(refused);
    // appends after the failure are ignored
    expect(spool.append(Buffer.from('more'))).toBeUndefined();
    expect(spool.size).toBe(8);
    spool.release();
  });
});
