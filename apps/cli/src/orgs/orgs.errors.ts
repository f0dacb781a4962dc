/** Another org already has this slug. */
export class OrgSlugTakenError extends Error {
  readonly code = 'org_slug_taken';

  constructor(readonly slug: string) {
    super(`an org with slug ${slug} already exists`);
    this.name = 'OrgSlugTakenError';
  }
}

/** No org has this slug. */
export class OrgNotFoundError extends Error {
  readonly code = 'org_not_found';

  constructor(readonly slug: string) {
    super(`no org with slug ${slug}`);
    this.name = 'OrgNotFoundError';
  }
}
