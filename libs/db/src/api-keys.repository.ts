import { Injectable } from '@nestjs/common';
import type { ApiKey } from './generated/prisma/client';
import type { BillingStatus } from './generated/prisma/enums';
import { PrismaService } from './prisma.service';

/** What the gateway needs to authorize a request with a key: nothing more is read on that path. */
export interface ApiKeyAuthRow {
  id: string;
  orgId: string;
  prefix: string;
  allowedModels: string[];
  rpmLimit: number | null;
  tpmLimit: number | null;
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** The org's settings that every request checks (budget, billing standing). */
  org: {
    monthlyBudgetMicros: bigint | null;
    billingStatus: BillingStatus;
    billingStatusAt: Date | null;
  };
}

export interface NewApiKey {
  orgId: string;
  name: string;
  prefix: string;
  secretHash: string;
  allowedModels: string[];
  expiresAt: Date | null;
  createdById: string | null;
  rpmLimit?: number | null;
  tpmLimit?: number | null;
}

/** A key as the console lists it: never its hash. */
export interface ApiKeyListRow {
  id: string;
  name: string;
  prefix: string;
  allowedModels: string[];
  rpmLimit: number | null;
  tpmLimit: number | null;
  createdAt: Date;
  expiresAt: Date | null;
  revokedAt: Date | null;
  lastUsedAt: Date | null;
  createdById: string | null;
  createdByLogin: string | null;
}

/** The settings of a key that can change after it is minted. */
export interface ApiKeyChanges {
  name?: string;
  allowedModels?: string[];
  rpmLimit?: number | null;
  tpmLimit?: number | null;
  expiresAt?: Date | null;
}

const LIST_SELECT = {
  id: true,
  name: true,
  prefix: true,
  allowedModels: true,
  rpmLimit: true,
  tpmLimit: true,
  createdAt: true,
  expiresAt: true,
  revokedAt: true,
  lastUsedAt: true,
  createdById: true,
  createdBy: { select: { login: true } },
} as const;

type ListSelected = Omit<ApiKeyListRow, 'createdByLogin'> & { createdBy: { login: string } | null };

function toListRow(r: ListSelected): ApiKeyListRow {
  const { createdBy, ...rest } = r;
  return { ...rest, createdByLogin: createdBy?.login ?? null };
}

/** API keys. Secrets never reach this table: only their SHA-256 and a public prefix. */
@Injectable()
export class ApiKeysRepository {
  constructor(private readonly prisma: PrismaService) {}

  create(data: NewApiKey): Promise<ApiKey> {
    return this.prisma.apiKey.create({ data });
  }

  findAuthByHash(secretHash: string): Promise<ApiKeyAuthRow | null> {
    return this.prisma.apiKey.findUnique({
      where: { secretHash },
      select: {
        id: true,
        orgId: true,
        prefix: true,
        allowedModels: true,
        rpmLimit: true,
        tpmLimit: true,
        expiresAt: true,
        revokedAt: true,
        org: { select: { monthlyBudgetMicros: true, billingStatus: true, billingStatusAt: true } },
      },
    });
  }

  /** The auth row of a key by its id (a batch line runs as the key that created the batch), or null. */
  findAuthById(id: string): Promise<ApiKeyAuthRow | null> {
    return this.prisma.apiKey.findUnique({
      where: { id },
      select: {
        id: true,
        orgId: true,
        prefix: true,
        allowedModels: true,
        rpmLimit: true,
        tpmLimit: true,
        expiresAt: true,
        revokedAt: true,
        org: { select: { monthlyBudgetMicros: true, billingStatus: true, billingStatusAt: true } },
      },
    });
  }

  /**
   * The auth rows of many keys at once, by their hashes (keys not found are absent), in one query however
   * many: the gateway re-checks every key it has in memory while revocations cannot be pushed to it.
   */
  async findAuthByHashes(secretHashes: readonly string[]): Promise<Array<ApiKeyAuthRow & { secretHash: string }>> {
    if (secretHashes.length === 0) return [];
    const rows = await this.prisma.$queryRaw<
      Array<{
        id: string;
        org_id: string;
        prefix: string;
        secret_hash: string;
        allowed_models: string[];
        rpm_limit: number | null;
        tpm_limit: number | null;
        expires_at: Date | null;
        revoked_at: Date | null;
        monthly_budget_micros: bigint | null;
        billing_status: BillingStatus;
        billing_status_at: Date | null;
      }>
    >`
      SELECT k.id::text, k.org_id::text, k.prefix, k.secret_hash, k.allowed_models, k.rpm_limit, k.tpm_limit, k.expires_at,
             k.revoked_at, o.monthly_budget_micros, o.billing_status::text AS billing_status, o.billing_status_at
      FROM api_keys k JOIN orgs o ON o.id = k.org_id
      WHERE k.secret_hash = ANY(${[...secretHashes]}::bpchar[])`;
    return rows.map((r) => ({
      id: r.id,
      orgId: r.org_id,
      prefix: r.prefix,
      secretHash: r.secret_hash,
      allowedModels: r.allowed_models,
      rpmLimit: r.rpm_limit,
      tpmLimit: r.tpm_limit,
      expiresAt: r.expires_at,
      revokedAt: r.revoked_at,
      org: { monthlyBudgetMicros: r.monthly_budget_micros, billingStatus: r.billing_status, billingStatusAt: r.billing_status_at },
    }));
  }

  /** An org's keys, newest first. */
  async listByOrg(orgId: string): Promise<ApiKeyListRow[]> {
    const rows = await this.prisma.apiKey.findMany({ where: { orgId }, select: LIST_SELECT, orderBy: { createdAt: 'desc' } });
    return rows.map(toListRow);
  }

  /** A key of this org (any other org's key is null, whatever its id). */
  async findInOrg(orgId: string, id: string): Promise<(ApiKeyListRow & { secretHash: string }) | null> {
    const row = await this.prisma.apiKey.findFirst({ where: { id, orgId }, select: { ...LIST_SELECT, secretHash: true } });
    return row === null ? null : { ...toListRow(row), secretHash: row.secretHash };
  }

  /** Changes a key of this org; null when the org has no such key. */
  async updateInOrg(orgId: string, id: string, changes: ApiKeyChanges): Promise<(ApiKeyListRow & { secretHash: string }) | null> {
    const r = await this.prisma.apiKey.updateMany({ where: { id, orgId }, data: changes });
    return r.count === 0 ? null : this.findInOrg(orgId, id);
  }

  /** By id (a UUID) or by public prefix. */
  findByIdOrPrefix(idOrPrefix: string): Promise<ApiKey | null> {
    const isUuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(idOrPrefix);
    return this.prisma.apiKey.findFirst({ where: isUuid ? { id: idOrPrefix } : { prefix: idOrPrefix } });
  }

  /** Marks the key revoked (first revocation time wins) and returns it; null when there is no such key. */
  async revoke(id: string, at: Date): Promise<ApiKey | null> {
    await this.prisma.apiKey.updateMany({ where: { id, revokedAt: null }, data: { revokedAt: at } });
    return this.prisma.apiKey.findUnique({ where: { id } });
  }

  /** Bumps last_used_at for many keys in one statement; ids sorted so concurrent writers lock in one order. */
  async touchLastUsed(ids: readonly string[], at: Date): Promise<void> {
    if (ids.length === 0) return;
    const sorted = [...ids].sort();
    await this.prisma.$executeRaw`
      UPDATE api_keys SET last_used_at = ${at}
      WHERE id IN (SELECT unnest(${sorted}::uuid[]) ORDER BY 1)
        AND (last_used_at IS NULL OR last_used_at < ${at})`;
  }
}
