import { Injectable } from '@nestjs/common';
import type { BillingLine, BillingSubscriptionItem } from './generated/prisma/client';
import { PrismaService } from './prisma.service';

export type NewBillingLine = Omit<BillingLine, 'createdAt'>;

/** billing_lines (the Stripe catalog of price lines per account) and the orgs' subscription items for them. */
@Injectable()
export class BillingLinesRepository {
  constructor(private readonly prisma: PrismaService) {}

  findByAccount(account: string): Promise<BillingLine[]> {
    return this.prisma.billingLine.findMany({ where: { account }, orderBy: { createdAt: 'asc' } });
  }

  /** Stores a line; when another process stored it first, keeps theirs (same Stripe objects: idempotent creates). */
  async insert(line: NewBillingLine): Promise<void> {
    await this.prisma.billingLine.createMany({ data: [line], skipDuplicates: true });
  }

  findItems(orgId: string, account: string): Promise<BillingSubscriptionItem[]> {
    return this.prisma.billingSubscriptionItem.findMany({ where: { orgId, account } });
  }

  /** Forgets an org's subscription items in an account (its subscription was replaced). */
  async deleteItems(orgId: string, account: string): Promise<void> {
    await this.prisma.billingSubscriptionItem.deleteMany({ where: { orgId, account } });
  }

  async insertItem(orgId: string, account: string, lineKey: string, itemId: string): Promise<void> {
    await this.prisma.billingSubscriptionItem.createMany({ data: [{ orgId, account, lineKey, itemId }], skipDuplicates: true });
  }
}
