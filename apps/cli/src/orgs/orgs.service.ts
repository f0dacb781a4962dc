import { Injectable } from '@nestjs/common';
import { OrgsRepository, type Org } from '@spot/db';
import { parseOrgName, parseOrgSlug } from './org-input';
import { OrgNotFoundError, OrgSlugTakenError } from './orgs.errors';

/** Orgs as the operator's CLI sees them. */
@Injectable()
export class OrgsService {
  constructor(private readonly orgs: OrgsRepository) {}

  /**
   * Creates an org; its name defaults to the slug.
   * @throws InvalidArgumentError, OrgSlugTakenError
   */
  async create(slug: string, name?: string): Promise<Org> {
    const validSlug = parseOrgSlug(slug);
    const validName = name === undefined ? validSlug : parseOrgName(name);
    const org = await this.orgs.create(validSlug, validName);
    if (!org) throw new OrgSlugTakenError(validSlug);
    return org;
  }

  /** @throws InvalidArgumentError, OrgNotFoundError */
  async getBySlug(slug: string, argument = 'org'): Promise<Org> {
    const org = await this.orgs.findBySlug(parseOrgSlug(slug, argument));
    if (!org) throw new OrgNotFoundError(slug);
    return org;
  }
}
