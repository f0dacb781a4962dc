import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG, type AppConfig } from '@spot/config';
import type { ApiKeyListRow, User } from '@spot/db';
import { ApiKeysService, InvalidArgumentError } from '@spot/keys';
import { ModelCatalog, loadTiersFile } from '@spot/tiers';
import { forbidden, invalid, notFound } from '../errors/console.errors';
import { atLeast, OrgAccessService } from '../orgs/org-access.service';

/** A key as the console shows it: the public prefix, never the secret or its hash. */
export interface KeyView {
  id: string;
  name: string;
  prefix: string;
  allowedModels: string[];
  rpmLimit: number | null;
  tpmLimit: number | null;
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
  createdBy: string | null;
}

export function keyView(k: ApiKeyListRow): KeyView {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    allowedModels: k.allowedModels,
    rpmLimit: k.rpmLimit,
    tpmLimit: k.tpmLimit,
    createdAt: k.createdAt.toISOString(),
    expiresAt: k.expiresAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
    createdBy: k.createdByLogin,
  };
}

export interface KeyInput {
  name?: string;
  allowedModels?: string[];
  rpmLimit?: number | null;
  tpmLimit?: number | null;
  expiresAt?: string | null;
}

/**
 * An org's API keys for its members: every member may list keys and mint their own; admins and owners
 * change and revoke any key, members only the keys they minted.
 */
@Injectable()
export class ConsoleKeysService {
  /** Model ids the gateway serves (from TIERS_FILE), to reject typos in allow-lists; null if unreadable. */
  private readonly models: ReadonlySet<string> | null;

  constructor(
    private readonly access: OrgAccessService,
    private readonly keys: ApiKeysService,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    let models: Set<string> | null = null;
    try {
      models = new Set(new ModelCatalog(loadTiersFile(config.TIERS_FILE)).modelIds());
    } catch {
      models = null; // the console does not route; a missing tiers file only loses the typo check
    }
    this.models = models;
  }

  /** The model ids the console offers in forms. */
  modelIds(): string[] {
    return this.models === null ? [] : [...this.models].sort();
  }

  async list(user: User, slug: string): Promise<KeyView[]> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    return (await this.keys.list(org.id)).map(keyView);
  }

  /** Mints a key; the response carries the whole key, the only time it is ever shown. */
  async create(user: User, slug: string, input: KeyInput): Promise<KeyView & { key: string }> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    this.checkModels(input.allowedModels);
    const created = await this.mapErrors(() =>
      this.keys.create({
        orgId: org.id,
        name: input.name ?? 'default',
        allowedModels: input.allowedModels ?? [],
        expiresAt: input.expiresAt ? new Date(input.expiresAt) : null,
        createdById: user.id,
        rpmLimit: input.rpmLimit ?? null,
        tpmLimit: input.tpmLimit ?? null,
      }),
    );
    const row = await this.keys.find(org.id, created.id);
    if (row === null) throw notFound('The new key vanished.');
    return { ...keyView(row), key: created.key };
  }

  async update(user: User, slug: string, id: string, input: KeyInput): Promise<KeyView> {
    const org = await this.mayManage(user, slug, id);
    this.checkModels(input.allowedModels);
    const changes = {
      ...input,
      expiresAt: input.expiresAt === undefined ? undefined : input.expiresAt === null ? null : new Date(input.expiresAt),
    };
    const row = await this.mapErrors(() => this.keys.update(org.id, id, changes));
    if (row === null) throw notFound('No such key in this org.');
    return keyView(row);
  }

  /** Revokes a key: every gateway refuses it within a second. */
  async revoke(user: User, slug: string, id: string): Promise<KeyView> {
    const org = await this.mayManage(user, slug, id);
    const row = await this.keys.revokeInOrg(org.id, id);
    if (row === null) throw notFound('No such key in this org.');
    return keyView(row);
  }

  async get(user: User, slug: string, id: string): Promise<KeyView> {
    const { org } = await this.access.requireRole(user.id, slug, 'member');
    const row = await this.keys.find(org.id, id);
    if (row === null) throw notFound('No such key in this org.');
    return keyView(row);
  }

  private async mayManage(user: User, slug: string, id: string) {
    const { org, role } = await this.access.requireRole(user.id, slug, 'member');
    const row = await this.keys.find(org.id, id);
    if (row === null) throw notFound('No such key in this org.');
    if (!atLeast(role, 'admin') && row.createdById !== user.id) throw forbidden('Members can only change the keys they minted.');
    return org;
  }

  private checkModels(models: string[] | undefined): void {
    if (models === undefined || this.models === null) return;
    const unknown = models.filter((m) => !this.models!.has(m));
    if (unknown.length > 0) throw invalid('allowedModels', `unknown model ${unknown.map((m) => JSON.stringify(m)).join(', ')}`);
  }

  private async mapErrors<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw invalid(err.argument, err.message.slice(err.argument.length + 2));
      throw err;
    }
  }
}
