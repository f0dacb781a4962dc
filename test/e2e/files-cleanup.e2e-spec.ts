import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { loadConfig } from '@spot/config';
import { objectId } from '@spot/contract';
import { FilesRepository, OrgsRepository, PrismaService } from '@spot/db';
import { uniqueSlug } from '../factories/orgs.factory';
import { killProcess, spawnWorker } from '../support/batch-stack';

/** The worker's scheduled cleanup of uploads that never finished (their gateway died mid-upload). */
describe('worker: stale uploads are deleted on a schedule', () => {
  let prisma: PrismaService;
  let worker: ChildProcess | undefined;

  beforeAll(() => {
    prisma = new PrismaService(loadConfig());
  });
  afterAll(async () => {
    if (worker) await killProcess(worker);
    await prisma?.$disconnect();
  });

  it('deletes an upload left `uploading` past FILES_STALE_UPLOAD_S, with its chunks; a fresh upload and an old finished file stay', async () => {
    const org = (await new OrgsRepository(prisma).create(uniqueSlug('files-gc'), 'files gc'))!;
    const files = new FilesRepository(prisma);
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000);
    const [stale, fresh, done] = [objectId('file-'), objectId('file-'), objectId('file-')];
    for (const id of [stale, fresh, done]) {
      await files.createUploading(id, org.id, `${id}.jsonl`, 'pending');
      await files.appendChunk(id, 0, new Uint8Array(Buffer.from('{"a":1}\n')));
    }
    await files.markProcessed(done, 8, 'batch');
    await prisma.file.updateMany({ where: { id: { in: [stale, done] } }, data: { createdAt: twoHoursAgo } });

    worker = spawnWorker({ REDIS_PREFIX: `test:${randomUUID()}:`, FILES_STALE_UPLOAD_S: '3600', FILES_CLEANUP_EVERY_MS: '300' });
    const deadline = Date.now() + 20_000;
    while ((await prisma.file.count({ where: { id: stale } })) > 0) {
      if (Date.now() > deadline) throw new Error('the stale upload was not deleted');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await prisma.fileChunk.count({ where: { fileId: stale } })).toBe(0);
    // another pass or two, then the others are still there
    await new Promise((r) => setTimeout(r, 1_000));
    expect((await prisma.file.findMany({ where: { orgId: org.id }, orderBy: { id: 'asc' } })).map((f) => [f.id, f.status])).toEqual(
      [
        [fresh, 'uploading'],
        [done, 'processed'],
      ].sort(([a], [b]) => (a < b ? -1 : 1)),
    );
    expect(await prisma.fileChunk.count({ where: { fileId: { in: [fresh, done] } } })).toBe(2);
  });
});
