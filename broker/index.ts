export * from './gateway-broker.ts';
export * from './connack-codes.ts';
export type { SessionContext } from './session-admission.ts';
export * from './cluster/redis-cluster.ts';
export * from './flow-control-config.ts';
export { assertPinnedVersions } from './aedes-internals.ts';
