import { z } from 'zod';
import { invalid } from '../errors/console.errors';

export const slugSchema = z
  .string()
  .min(3, 'expected 3 to 40 characters')
  .max(40, 'expected 3 to 40 characters')
  .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, 'expected lower-case letters, digits and - (not at either end)');
export const loginSchema = z.string().regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$/, 'expected a GitHub login');
export const roleSchema = z.enum(['owner', 'admin', 'member']);

export const createOrgSchema = z.strictObject({
  slug: slugSchema,
  name: z.string().trim().min(1, 'must not be empty').max(100, 'at most 100 characters'),
});
export const updateOrgSchema = z.strictObject({
  name: z.string().trim().min(1, 'must not be empty').max(100, 'at most 100 characters').optional(),
  /** USD per calendar month (UTC); null removes the cap. */
  monthlyBudgetUsd: z.number().nonnegative('must be 0 or more').max(10_000_000, 'at most 10,000,000').nullable().optional(),
});
export const inviteSchema = z.strictObject({ login: loginSchema, role: roleSchema.default('member') });
export const memberChangeSchema = z.strictObject({ role: roleSchema });

const limit = z.number().int('must be a whole number').positive('must be positive').max(1_000_000_000).nullable();
export const createKeySchema = z.strictObject({
  name: z.string().optional(),
  allowedModels: z.array(z.string()).max(100).optional(),
  rpmLimit: limit.optional(),
  tpmLimit: limit.optional(),
  /** ISO date-time, or null for never. */
  expiresAt: z.iso.datetime({ offset: true }).nullable().optional(),
});
export const updateKeySchema = createKeySchema;

/** Parses a JSON or form body with `schema`; a problem becomes 400 naming the field. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body ?? {});
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue.path.map(String).join('.') || (issue.code === 'unrecognized_keys' ? (issue as { keys?: string[] }).keys?.join(', ') ?? 'body' : 'body');
  const message = issue.code === 'unrecognized_keys' ? 'unknown field' : issue.message;
  throw invalid(field, message);
}
