// @peculiar/x509 resolves its crypto through tsyringe, which needs the Reflect metadata polyfill loaded
// first; it then uses the platform WebCrypto (globalThis.crypto in Node ≥ 19 and in browsers).
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export { x509 };
