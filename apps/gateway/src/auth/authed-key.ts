/** A verified key as the request path needs it: one shape, built once per cache fill. */
export interface AuthedKey {
  readonly id: string;
  readonly orgId: string;
  readonly prefix: string;
  /** null: every model the gateway serves. */
  readonly allowedModels: ReadonlySet<string> | null;
  readonly rpmLimit: number | null;
  readonly tpmLimit: number | null;
  /** Epoch ms, or null for keys that never expire. */
  readonly expiresAtMs: number | null;
  /** The org's monthly spend cap in nano-USD, or null for none. */
  readonly budgetNanos: number | null;
  /** Epoch ms from which the org is refused for its billing standing (past due beyond grace, canceled), or null. */
  readonly billingBlockedAtMs: number | null;
}
