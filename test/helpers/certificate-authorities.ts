import { type CaCredential, systemClock } from '../../core/index.ts';
import { type CertificateAuthorities, initialKeyFiles, openCertificateAuthorities } from '../../provisioning/index.ts';
import type { Registry } from '../../registry/index.ts';

/**
 * The CA set (provisioning/certificate-authorities.ts) over CAs a test made in memory: they are recorded in
 * the registry as the installation's first CAs, with their keys kept in memory (no pki/ directory).
 */
export function authoritiesFor(registry: Registry, initial: { root: CaCredential; deviceCa: CaCredential; claimCa: CaCredential }): Promise<CertificateAuthorities> {
  return openCertificateAuthorities({ registry, pkiDir: '/nonexistent', initial, initialKeyFiles, clock: systemClock, renewServerCertificate: async () => {} });
}
