export * from './pki-store.ts';
export * from './admin-token.ts';
export * from './register-device.ts';
export * from './certificate-service.ts';
export * from './create-claim.ts';
export * from './rate-limiter.ts';
export * from './api/build-api.ts';
export * from './api/operator-auth.ts';
