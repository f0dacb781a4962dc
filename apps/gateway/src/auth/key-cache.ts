import { LRUCache } from 'lru-cache';
import type { AuthedKey } from './authed-key';

/** A cache entry: a key (verified at `fetchedAt`) or a remembered miss / revocation (`key` null). */
export interface KeyCacheEntry {
  key: AuthedKey | null;
  fetchedAt: number;
  revoked: boolean;
}

/** In-process map from SHA-256 of a key to what Postgres said about it, bounded by count. */
export class KeyCache {
  private readonly lru: LRUCache<string, KeyCacheEntry>;

  constructor(max: number) {
    this.lru = new LRUCache({ max });
  }

  get(hash: string): KeyCacheEntry | undefined {
    return this.lru.get(hash);
  }

  set(hash: string, entry: KeyCacheEntry): void {
    this.lru.set(hash, entry);
  }

  delete(hash: string): void {
    this.lru.delete(hash);
  }

  /** Forgets every verified key of an org; returns how many. */
  deleteOrg(orgId: string): number {
    let n = 0;
    for (const [hash, entry] of this.lru.entries()) {
      if (entry.key?.orgId === orgId) {
        this.lru.delete(hash);
        n++;
      }
    }
    return n;
  }

  /** The hashes of every verified key held (not the remembered misses and revocations). */
  verifiedHashes(): string[] {
    const hashes: string[] = [];
    for (const [hash, entry] of this.lru.entries()) if (entry.key !== null) hashes.push(hash);
    return hashes;
  }

  get size(): number {
    return this.lru.size;
  }
}
