/** The tier or replica a command names is not in the tiers file (TIERS_FILE). */
export class TierNotFoundError extends Error {
  readonly code = 'tier_not_found';

  constructor(message: string) {
    super(message);
    this.name = 'TierNotFoundError';
  }
}
