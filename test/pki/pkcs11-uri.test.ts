import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { keyUri, parsePkcs11Uri, pkcs11Pin } from '../../provisioning/pkcs11-key-store.ts';

/** PKCS#11 URIs (RFC 7512) as key_refs, and where the PIN may come from (README "CA keys in an HSM"). */
describe('PKCS#11 key references', () => {
  it('parses token, object and module-path, percent-decoded, and writes them back', () => {
    const parsed = parsePkcs11Uri('pkcs11:token=my%20token;object=device-ca;type=private?module-path=%2Fopt%2Fhsm%2Flib.so');
    expect(parsed).toEqual({ token: 'my token', object: 'device-ca', modulePath: '/opt/hsm/lib.so' });
    expect(parsePkcs11Uri(keyUri(parsed, 'ca-1234'))).toEqual({ ...parsed, object: 'ca-1234' });
  });

  it('refuses URIs without a token or module, and a PIN in the URI', () => {
    for (const [uri, reason] of [
      ['file:///etc/key.pem', /pkcs11:/],
      ['pkcs11:object=x?module-path=/lib.so', /token=/],
      ['pkcs11:token=t;object=x', /module-path=/],
      ['pkcs11:token=t?module-path=/lib.so&pin-value=1234', /PIN never goes in the URI/],
    ] as const) {
      expect(() => parsePkcs11Uri(uri)).toThrow(reason);
      try {
        parsePkcs11Uri(uri);
      } catch (error) {
        expect(error).toMatchObject({ code: 'PKI_KEY_STORE_UNAVAILABLE' });
        expect(String((error as Error).message)).not.toContain('1234');
      }
    }
  });

  it('takes the PIN from FLEETGATE_PKCS11_PIN or FLEETGATE_PKCS11_PIN_FILE, and says which to set when neither is', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetgate-pin-'));
    try {
      writeFileSync(join(dir, 'pin'), '424242\n', { mode: 0o600 });
      expect(pkcs11Pin({ FLEETGATE_PKCS11_PIN: '1111' })).toBe('1111');
      expect(pkcs11Pin({ FLEETGATE_PKCS11_PIN_FILE: join(dir, 'pin') })).toBe('424242');
      expect(() => pkcs11Pin({})).toThrow(/FLEETGATE_PKCS11_PIN or FLEETGATE_PKCS11_PIN_FILE/);
      expect(() => pkcs11Pin({ FLEETGATE_PKCS11_PIN_FILE: join(dir, 'missing') })).toThrow(/cannot be read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
