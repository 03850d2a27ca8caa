/**
 * The TLS 1.2 cipher suites both listeners (MQTT and the HTTPS API) offer, in OpenSSL's names: ECDHE key
 * exchange (forward secrecy) with an AEAD cipher only. Left out on purpose: CBC suites (SHA-1 or SHA-2 MACs,
 * Lucky13-style padding oracles), CCM and CCM-8 (CCM-8's 64-bit tag), static RSA and finite-field DHE key
 * exchange. ECDSA first because fleetgate's server key is P-256; the RSA variants serve an RSA server key.
 * The list names no TLS 1.3 suite (`TLS_…`), so Node keeps OpenSSL's TLS 1.3 defaults (AES-GCM and
 * ChaCha20-Poly1305; CCM-8 is not among them). Every device TLS stack that speaks TLS 1.2 with ECDHE
 * (mbedTLS, wolfSSL, OpenSSL, BearSSL, the ESP-IDF and Zephyr stacks) has AES-128-GCM. README "TLS and HTTP
 * hardening" documents this; test/hardening/tls-cipher-suites.test.ts checks it with `openssl s_client`.
 */
export const tls12CipherSuites = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** The oldest protocol version either listener accepts. */
export const tlsMinVersion = 'TLSv1.2' as const; // `as const`: stays the literal type Node's SecureVersion needs

/**
 * What both listeners pass to Node's TLS server, at start and on every reload of their trusted CAs (a
 * `setSecureContext` without the floor and the suites falls back to Node's defaults, CBC and SHA-1 included).
 */
export function listenerSecureContext(material: { readonly cert: string; readonly key: string; readonly ca: readonly string[] }) {
  return { cert: material.cert, key: material.key, ca: [...material.ca], minVersion: tlsMinVersion, ciphers: tls12CipherSuites };
}
