export * from './gateway-broker.ts';
export * from './connack-codes.ts';
export type { SessionContext } from './session-admission.ts';
