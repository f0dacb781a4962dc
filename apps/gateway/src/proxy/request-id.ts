import { randomBytes } from 'node:crypto';

// 16 random hex digits per process, then a counter: unique across replicas and restarts, and ~100x cheaper
// than a random UUID per request. Ids are identifiers, not secrets.
const processPart = randomBytes(8).toString('hex');
let counter = 0;

/** `req_` + 32 hex digits, like OpenAI's request ids; keys the usage event of the request. */
export function newRequestId(): string {
  counter = (counter + 1) % 0x1_0000_0000_0000; // 48 bits, padded to 16 hex digits
  return `req_${processPart}${counter.toString(16).padStart(16, '0')}`;
}
