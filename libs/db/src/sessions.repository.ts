import { Injectable } from '@nestjs/common';
import type { User } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** A live console session with its user. */
export interface SessionWithUser {
  id: string;
  csrfToken: string;
  expiresAt: Date;
  user: User;
}

/** Console sessions. `id` is the SHA-256 of the cookie's token: a stolen table cannot be replayed as cookies. */
@Injectable()
export class SessionsRepository {
  constructor(private readonly prisma: PrismaService) {}

  async create(data: { id: string; userId: string; csrfToken: string; expiresAt: Date }): Promise<void> {
    await this.prisma.session.create({ data });
  }

  /** The session with this id if it has not expired, else null. */
  findLive(id: string, now: Date): Promise<SessionWithUser | null> {
    return this.prisma.session.findFirst({
      where: { id, expiresAt: { gt: now } },
      select: { id: true, csrfToken: true, expiresAt: true, user: true },
    });
  }

  async delete(id: string): Promise<void> {
    await this.prisma.session.deleteMany({ where: { id } });
  }

  /** Drops expired sessions; returns how many. */
  async deleteExpired(now: Date): Promise<number> {
    return (await this.prisma.session.deleteMany({ where: { expiresAt: { lte: now } } })).count;
  }
}
