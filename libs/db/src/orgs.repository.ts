import { Injectable } from '@nestjs/common';
import type { Org } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

/** Orgs (tenants). */
@Injectable()
export class OrgsRepository {
  constructor(private readonly prisma: PrismaService) {}

  /** Creates an org; null when the slug is taken. */
  async create(slug: string, name: string): Promise<Org | null> {
    const rows = await this.prisma.$queryRaw<Org[]>`
      INSERT INTO orgs (id, slug, name) VALUES (gen_random_uuid(), ${slug}, ${name})
      ON CONFLICT (slug) DO NOTHING
      RETURNING id, slug, name, created_at AS "createdAt"`;
    return rows[0] ?? null;
  }

  rename(orgId: string, name: string): Promise<Org> {
    return this.prisma.org.update({ where: { id: orgId }, data: { name } });
  }

  /** Sets (or, with null, removes) an org's monthly budget in micro-USD. */
  async setBudget(orgId: string, micros: bigint | null): Promise<Org> {
    return this.prisma.org.update({ where: { id: orgId }, data: { monthlyBudgetMicros: micros } });
  }

  findBySlug(slug: string): Promise<Org | null> {
    return this.prisma.org.findUnique({ where: { slug } });
  }
}
