export { probeServices, errorReason } from './service-probe';
export type { ProbeTargets, ProbeResult } from './service-probe';
