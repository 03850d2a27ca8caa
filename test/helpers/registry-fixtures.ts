import { type CaCredential, type Clock, createCsr, dayMs, generateKeyPair, issueCertificate, privateKeyToPem, systemClock } from '../../core/index.ts';
import { type CertificateAuthorities, registerDevice } from '../../provisioning/index.ts';
import type { AuditEntry, AuditQuery, Registry } from '../../registry/index.ts';

/** PEM material a client connects with. */
export interface ClientCredential {
  readonly key: string;
  readonly cert: string;
}

/**
 * Devices, claims and audit waits written straight through the provisioning use-cases and the registry:
 * the set-up both test/helpers/test-gateway.ts (whole gateway) and test/helpers/api-under-test.ts (the API
 * alone) give their tests.
 */
export interface RegistryFixtures {
  /** Registers a device through the real use-case; `clock` lets a test issue an already-expired certificate. */
  createDevice(id: string, options?: { clock?: Clock; template?: string; policy?: string; attributes?: Record<string, string> }): Promise<ClientCredential & { serial: string }>;
  /** A claim certificate from the claim CA, registered as a claim. */
  createClaim(id: string, options?: { expiresAt?: Date }): Promise<ClientCredential & { serial: string }>;
  /** Polls the audit log until an entry matches (audit writes may be asynchronous to the answer that caused them). */
  waitForAudit(query: AuditQuery, predicate?: (entry: AuditEntry) => boolean): Promise<AuditEntry>;
}

/** Issues with the CAs active at the time of each call (a test may rotate them in between). */
export function registryFixtures(authorities: CertificateAuthorities, registry: Registry): RegistryFixtures {
  return {
    async createDevice(id, options = {}) {
      const keys = await generateKeyPair();
      const record = await registerDevice(
        { registry, authorities, clock: options.clock ?? systemClock },
        {
          id,
          csr: await createCsr(keys, id),
          actor: 'test',
          ...(options.template ? { template: options.template } : {}),
          ...(options.policy ? { policy: options.policy } : {}),
          ...(options.attributes ? { attributes: options.attributes } : {}),
        },
      );
      return { key: await privateKeyToPem(keys.privateKey), cert: record.pem + authorities.chainFor(record.issuerCa), serial: record.serial };
    },
    async createClaim(id, options = {}) {
      const expiresAt = options.expiresAt ?? new Date(Date.now() + 30 * dayMs);
      const claimCa = await authorities.issuer('claim');
      const issued = await issueClaimCertificate(claimCa.credential, id, new Date(Math.max(expiresAt.getTime(), Date.now() + dayMs)));
      await registry.createClaim({ id, template: 'default', certificateSerial: issued.serial, issuerCa: claimCa.id, maxUses: null, expiresAt }, { actor: 'test', action: 'claim.create', result: 'ok' });
      return { ...issued, cert: issued.cert + claimCa.chainPem };
    },
    waitForAudit: (query, predicate) => waitForAudit(registry, query, predicate),
  };
}

/** Polls the audit log until an entry matches (audit writes may be asynchronous to the answer that caused them). */
export async function waitForAudit(registry: Registry, query: AuditQuery, predicate: (entry: AuditEntry) => boolean = () => true): Promise<AuditEntry> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const match = (await registry.queryAudit({ ...query, limit: 1000 })).find(predicate);
    if (match) return match;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`no audit entry matching ${JSON.stringify(query)}`);
}

export async function issueClaimCertificate(claimCa: CaCredential, claimId: string, notAfter: Date): Promise<ClientCredential & { serial: string }> {
  const keys = await generateKeyPair();
  const issued = await issueCertificate({ issuer: claimCa, publicKey: keys.publicKey, profile: { kind: 'claim', claimId, notAfter }, clock: systemClock });
  return { key: await privateKeyToPem(keys.privateKey), cert: issued.pem, serial: issued.serial };
}
