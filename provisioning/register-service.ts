import { backendPolicyName } from '../core/index.ts';
import type { CertificateRecord } from '../registry/index.ts';
import { type IssuingDeps, registerDevice } from './register-device.ts';

export interface RegisterServiceRequest {
  /** The service name: its certificate's CN and URI SAN (`urn:fleetgate:service:<name>`) and its MQTT client id. */
  readonly name: string;
  /** Default `backend`: publish, subscribe and receive on `devices/#`. */
  readonly policy?: string;
  /** The caller keeps the private key; only the CSR travels. */
  readonly csr: string;
  readonly actor: string;
}

/**
 * A service identity for a backend application (README "Commands": `service create`). It is a registry
 * identity of kind `service` with a policy override, issued under the default template's validity and key
 * rules, so it is listed, suspended and revoked exactly like a device and admitted by the same broker path.
 */
export async function registerService(deps: IssuingDeps, request: RegisterServiceRequest): Promise<CertificateRecord> {
  return registerDevice(deps, { id: request.name, kind: 'service', policy: request.policy ?? backendPolicyName, csr: request.csr, actor: request.actor });
}
