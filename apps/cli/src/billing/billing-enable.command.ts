import { BillingSetupService } from '@spot/billing';
import { OrgsRepository } from '@spot/db';
import { UsageError } from '../cli.errors';
import { type CliCommand, stringOption } from '../command';
import { OrgNotFoundError } from '../orgs/orgs.errors';

/** `billing enable --org <slug>`: the org's Stripe customer and subscription (the console's button does the same). */
export const billingEnableCommand: CliCommand = {
  name: 'billing enable',
  synopsis: 'billing enable --org <slug>',
  summary: 'Create the Stripe customer and metered subscription of an org (idempotent).',
  options: { org: { type: 'string' } },
  positionals: [],
  prepare(args) {
    const slug = stringOption(args, 'org');
    if (slug === undefined || slug === '') throw new UsageError('missing --org <slug>', 'billing enable');
    return async ({ app, print }) => {
      const org = await app.get(OrgsRepository).findBySlug(slug);
      if (org === null) throw new OrgNotFoundError(slug);
      const enabled = await app.get(BillingSetupService).enableOrg(org.id);
      print(
        enabled.created
          ? `billing enabled for ${slug}: customer ${enabled.customerId}, subscription ${enabled.subscriptionId} (${enabled.org.billingStatus})`
          : `billing already enabled for ${slug}: customer ${enabled.customerId}, subscription ${enabled.subscriptionId} (${enabled.org.billingStatus})`,
      );
    };
  },
};
