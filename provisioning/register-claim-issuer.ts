import { claimKeyForIssuer, type Clock, type EventBus, FleetgateError, pemBlocks, tlsFingerprint, x509 } from '../core/index.ts';
import type { ClaimRecord, Registry } from '../registry/index.ts';
import { auditRefusals } from './audited.ts';

/**
 * Registers a manufacturer CA as a claim issuer, so that factory-burned birth certificates work as claim
 * credentials: each birth certificate may enroll exactly the serial in its CN. The first certificate of the
 * bundle is the CA that signs birth certificates; the rest, if any, is its chain up to a self-signed root
 * (OpenSSL needs the whole path). TLS listeners reload their trust when the bus says so.
 */
export async function registerClaimIssuer(
  deps: { registry: Registry; events: EventBus; clock: Clock },
  request: { name: string; template: string; certificate: string; maxUses?: number | null; actor: string },
): Promise<ClaimRecord> {
  const { registry } = deps;
  return auditRefusals(registry, { actor: request.actor, action: 'claim.issuer.register', detail: { name: request.name.slice(0, 64), template: request.template } }, async () => {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(request.name)) throw new FleetgateError('REQUEST_INVALID', { message: 'The issuer name must be 1-64 letters, digits, ".", "_" or "-".' });
    let certificates: x509.X509Certificate[];
    try {
      certificates = pemBlocks(request.certificate, ['CERTIFICATE']).map((der) => new x509.X509Certificate(der));
    } catch (cause) {
      throw new FleetgateError('CLAIM_ISSUER_INVALID', { detail: { reason: 'unparseable PEM' }, cause });
    }
    const [issuer] = certificates;
    if (issuer === undefined) throw new FleetgateError('CLAIM_ISSUER_INVALID', { detail: { reason: 'no CERTIFICATE block' } });
    const now = deps.clock.now();
    if (issuer.getExtension(x509.BasicConstraintsExtension)?.ca !== true) throw new FleetgateError('CLAIM_ISSUER_INVALID', { detail: { reason: 'not a CA certificate' } });
    if (issuer.notAfter <= now || issuer.notBefore > now) throw new FleetgateError('CLAIM_ISSUER_INVALID', { detail: { reason: 'outside its validity period' } });
    if ((await registry.getTemplate(request.template)) === undefined) throw new FleetgateError('TEMPLATE_NOT_FOUND', { detail: { template: request.template } });

    const key = claimKeyForIssuer(await tlsFingerprint(issuer.toString('pem')));
    if ((await registry.getClaimByCertificateSerial(key)) !== undefined) throw new FleetgateError('CLAIM_ISSUER_INVALID', { detail: { reason: 'already registered' } });
    const claim = await registry.createClaim(
      { id: `mfr-${request.name}`, template: request.template, certificateSerial: key, maxUses: request.maxUses ?? null, expiresAt: issuer.notAfter, issuerPem: certificates.map((c) => c.toString('pem')).join('\n') + '\n' },
      { actor: request.actor, action: 'claim.issuer.register', result: 'ok', detail: { name: request.name, template: request.template, subject: issuer.subject, fingerprint: key } },
    );
    await deps.events.publish({ type: 'trust.changed' });
    return claim;
  });
}
