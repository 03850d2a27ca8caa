export * from './pki-store.ts';
export * from './admin-token.ts';
export * from './register-device.ts';
export * from './api-server.ts';
