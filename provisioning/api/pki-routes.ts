import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { X509Certificate } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { type CertificateAuthority, pkiSchemas as schemas } from '../../contract/index.ts';
import type { Clock, EventBus } from '../../core/index.ts';
import type { CertificateAuthorityRecord, Registry } from '../../registry/index.ts';
import { auditRefusals } from '../audited.ts';
import type { CertificateAuthorities } from '../certificate-authorities.ts';
import type { RevocationStatus } from '../revocation-status.ts';
import { type OperatorAuth, routeGuard } from './operator-auth.ts';

export interface PkiRouteDeps {
  readonly authorities: CertificateAuthorities;
  readonly revocation: RevocationStatus;
  readonly registry: Registry;
  readonly auth: OperatorAuth;
  readonly events: EventBus;
  readonly clock: Clock;
}

/**
 * PKI endpoints. Public: the root and the trust bundle, CRLs (DER, RFC 5280) and OCSP (RFC 6960 §A.1, POST).
 * For operators: the CAs and their rotation (README "Rotating certificates and CAs").
 */
export function registerPkiRoutes(fastify: FastifyInstance, deps: PkiRouteDeps): void {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const { authorities, registry } = deps;
  const { allow, operatorOf } = routeGuard(deps.auth);
  app.addContentTypeParser('application/ocsp-request', { parseAs: 'buffer', bodyLimit: 8 * 1024 }, (_request, body, done) => done(null, body));

  app.get('/v1/pki/ca', { schema: { tags: ['pki'], summary: 'Trusted root CA certificates (PEM; two during a root rotation)' } }, async (_request, reply) =>
    reply.type('application/x-pem-file').send(authorities.rootsPem()),
  );
  app.get('/v1/pki/trust-bundle', { schema: schemas.trustBundle }, async (_request, reply) => reply.type('application/x-pem-file').send(authorities.trustBundle()));

  app.get('/v1/pki/crl', { schema: schemas.crl }, async (request, reply) => {
    const crl = await deps.revocation.crl(request.query.ca);
    return reply.type('application/pkix-crl').send(Buffer.from(crl.der));
  });

  app.post('/v1/pki/ocsp', { schema: { tags: ['pki'], summary: 'OCSP responder for device and service certificates' } }, async (request, reply) => {
    const body = Buffer.isBuffer(request.body) ? new Uint8Array(request.body) : new Uint8Array();
    const { response, refusal } = await deps.revocation.ocsp(body);
    // OCSP clients understand only OCSP responses, so a malformed request is answered in kind (RFC 6960 §2.3).
    if (refusal) await registry.appendAudit({ actor: `api@${request.ip}`, action: 'pki.ocsp', result: 'refused', code: refusal });
    return reply.type('application/ocsp-response').header('cache-control', 'max-age=60').send(Buffer.from(response));
  });

  const described = async (cas: readonly CertificateAuthorityRecord[]): Promise<CertificateAuthority[]> => {
    const now = deps.clock.now();
    return Promise.all(cas.map(async (ca) => caJson(ca, await registry.certificateAuthorityUsage(ca.id, now))));
  };

  app.get('/v1/pki/cas', { onRequest: allow(['admin', 'operator', 'viewer']), schema: schemas.listCas }, async () => {
    await authorities.reload();
    const manufacturers = (await registry.listClaimIssuers()).flatMap((claim) => (claim.issuerPem === null ? [] : [manufacturerJson(claim.issuerPem, claim)]));
    return { items: [...(await described(authorities.list())), ...manufacturers] };
  });

  app.post('/v1/pki/cas/rotate', { onRequest: allow(['admin']), schema: schemas.rotateCa }, async (request) => {
    const { role, stage } = request.body;
    const actor = operatorOf(request).actor;
    let outcome;
    try {
      outcome = await auditRefusals(registry, { actor, action: `ca.${stage}`, detail: { role } }, () => authorities.rotate(role, stage, actor));
    } finally {
      // Every process (this one's listeners too) reloads its trust store and its CAs, also when a step after
      // the committed stage failed (the server certificate could not be re-issued): what is recorded counts.
      await deps.events.publish({ type: 'trust.changed' });
    }
    const items = await described(outcome.cas);
    return { role, stage, ca: items.find((ca) => ca.id === outcome.ca.id)!, items };
  });
}

/**
 * A manufacturer CA (POST /v1/claim-issuers, listed while its claim is active) as the list shows it: its one
 * claim counts while it has uses left. It is not rotated here; revoking its claim stops trusting it.
 */
function manufacturerJson(pem: string, claim: { uses: number; maxUses: number | null }): CertificateAuthority {
  const certificate = new X509Certificate(pem);
  const fingerprint = certificate.fingerprint256.replaceAll(':', '').toLowerCase();
  const usable = claim.maxUses === null || claim.uses < claim.maxUses ? 1 : 0;
  return {
    id: fingerprint.slice(0, 16),
    role: 'manufacturer',
    state: 'active',
    subject: certificate.subject.replaceAll('\n', ', '),
    issuerId: null,
    crossOf: null,
    fingerprint,
    notBefore: new Date(certificate.validFrom).toISOString(),
    notAfter: new Date(certificate.validTo).toISOString(),
    usage: { certificates: 0, claims: usable, authorities: 0 },
    pem,
  };
}

const caJson = (ca: CertificateAuthorityRecord, usage: CertificateAuthority['usage']): CertificateAuthority => ({
  id: ca.id,
  role: ca.role,
  state: ca.state,
  subject: ca.subject,
  issuerId: ca.issuerId,
  crossOf: ca.crossOf,
  fingerprint: ca.fingerprint,
  notBefore: ca.notBefore.toISOString(),
  notAfter: ca.notAfter.toISOString(),
  usage,
  pem: ca.pem,
});
