import { Injectable } from '@nestjs/common';
import type { File } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

export type FileRow = File;

/** A page of an org's files, newest (or oldest) first from a cursor. */
export interface FileListQuery {
  orgId: string;
  purpose?: string;
  order: 'asc' | 'desc';
  /** A file id: the page starts after it. */
  after?: string;
  limit: number;
}

/**
 * files and file_chunks: the Files API's bytes in Postgres, about a MiB a row, so that one backup holds
 * everything and no process holds a whole file. Every read is by org: another org's file is a miss.
 */
@Injectable()
export class FilesRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** A file row in `uploading`: invisible to the API until {@link markProcessed}. */
  async createUploading(id: string, orgId: string, filename: string, purpose: string): Promise<void> {
    await this.prisma.file.create({ data: { id, orgId, filename, purpose, status: 'uploading' } });
  }

  /** Appends chunk `seq` of a file. */
  async appendChunk(fileId: string, seq: number, data: Uint8Array<ArrayBuffer>): Promise<void> {
    await this.prisma.fileChunk.create({ data: { fileId, seq, data } });
  }

  /** The upload is complete: the file is visible with its size and purpose. */
  async markProcessed(id: string, bytes: number, purpose: string): Promise<FileRow> {
    return this.prisma.file.update({ where: { id }, data: { status: 'processed', bytes: BigInt(bytes), purpose } });
  }

  /** Deletes a file and its chunks (any status); true when it existed. */
  async deleteById(id: string): Promise<boolean> {
    return (await this.prisma.file.deleteMany({ where: { id } })).count > 0;
  }

  /** An org's visible file, or null (another org's, unknown, still uploading). */
  find(orgId: string, id: string): Promise<FileRow | null> {
    return this.prisma.file.findFirst({ where: { id, orgId, status: 'processed' } });
  }

  /** Deletes an org's visible file and its chunks; false when there is none. */
  async delete(orgId: string, id: string): Promise<boolean> {
    return (await this.prisma.file.deleteMany({ where: { id, orgId, status: 'processed' } })).count > 0;
  }

  /** One page (`limit` + 1 rows, so that the caller knows whether there is more), by created_at then id. */
  async list(q: FileListQuery): Promise<FileRow[]> {
    let cursor: FileRow | null = null;
    if (q.after !== undefined) {
      cursor = await this.find(q.orgId, q.after);
      if (cursor === null) return [];
    }
    const cmp = q.order === 'desc' ? 'lt' : 'gt';
    return this.prisma.file.findMany({
      where: {
        orgId: q.orgId,
        status: 'processed',
        ...(q.purpose !== undefined ? { purpose: q.purpose } : {}),
        ...(cursor !== null
          ? { OR: [{ createdAt: { [cmp]: cursor.createdAt } }, { createdAt: cursor.createdAt, id: { [cmp]: cursor.id } }] }
          : {}),
      },
      orderBy: [{ createdAt: q.order }, { id: q.order }],
      take: q.limit + 1,
    });
  }

  /** Chunk `seq` of a file, or null past its end. One row at a time: a download holds one chunk in memory. */
  async chunk(fileId: string, seq: number): Promise<Uint8Array | null> {
    const row = await this.prisma.fileChunk.findUnique({ where: { fileId_seq: { fileId, seq } }, select: { data: true } });
    return row?.data ?? null;
  }

  /** Deletes uploads that never finished (their process died) started before `before`; returns how many. */
  async deleteStaleUploads(before: Date): Promise<number> {
    return (await this.prisma.file.deleteMany({ where: { status: 'uploading', createdAt: { lt: before } } })).count;
  }
}
