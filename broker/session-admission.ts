import { claimRefusal, compilePolicy, decideEnrollment, decideInScope, isValidDeviceId, type PeerCredential, type PolicySubject, type SessionIdentity, type TemplateLimits } from '../core/index.ts';
import type { ClaimRecord, Registry } from '../registry/index.ts';
import type { AdmissionRefusal } from './connack-codes.ts';

/** What a session was admitted as; kept for its lifetime and consulted on every packet. */
export interface SessionContext {
  readonly identity: SessionIdentity;
  /** Device (or service) id, or the serial a claim session enrolls for. */
  readonly clientId: string;
  readonly certificateSerial: string;
  /** SHA-256 of the certificate the session was admitted with, lower-case hex (renewal checks it again). */
  readonly certificateFingerprint: string;
  /** Policy name and subject of device sessions, to recompile when the policy changes. */
  readonly policyName: string | undefined;
  readonly subject: PolicySubject | undefined;
  /** A renewed certificate's predecessor, superseded once this session is registered. */
  readonly replaces: string | null;
  readonly admittedAt: number;
  /** Traffic limits of the device's template; `{}` (gateway defaults) for claim sessions. */
  readonly limits: TemplateLimits;
}

export type AdmissionResult =
  | { readonly admitted: true; readonly session: SessionContext }
  | { readonly admitted: false; readonly code: AdmissionRefusal; readonly reason: string };

export interface AdmissionRequest {
  readonly credential: PeerCredential;
  readonly clientId: string;
  readonly willTopic: string | undefined;
  readonly now: Date;
  /** Whether a device or service session with this client id is open now, on this broker or any other. */
  readonly isConnected: (clientId: string) => Promise<boolean>;
}

const refuse = (code: AdmissionRefusal, reason: string): AdmissionResult => ({ admitted: false, code, reason });

/**
 * Decides a CONNECT. The TLS layer proved possession of a key; this checks, against the registry every time
 * (TLS session resumption skips certificate checks, and revocation must bite at once), that the certificate
 * and its holder are still good, and that the session is bound to that identity.
 */
export async function admitSession(request: AdmissionRequest, registry: Registry): Promise<AdmissionResult> {
  const { credential, clientId, now } = request;
  if (credential.kind === 'refused') return refuse(credential.code, credential.reason);
  // Operator certificates are for the admin API only; no MQTT identity stands behind them.
  if (credential.kind === 'operator') return refuse('AUTH_CERT_INVALID', 'operator certificates are not accepted for MQTT');
  if (credential.notAfter.getTime() <= now.getTime()) return refuse('AUTH_CERT_EXPIRED', 'certificate expired');

  if (credential.kind === 'claim') {
    const claim = await registry.getClaimByCertificateSerial(credential.claimKey);
    if (claim === undefined) return refuse('AUTH_CLAIM_INVALID', 'claim certificate not registered');
    const unusable = claimRefusal(claim, now);
    if (unusable !== undefined) return refuse('AUTH_CLAIM_INVALID', unusable.reason);
    // A claim session speaks for the device serial in its client id, which must be usable as a device id.
    if (!isValidDeviceId(clientId)) return refuse('AUTH_CLIENT_ID_MISMATCH', 'claim session client id is not a valid device serial');
    if (credential.boundSerial !== undefined && clientId !== credential.boundSerial) {
      return refuse('AUTH_CLIENT_ID_MISMATCH', 'a birth certificate session must use the serial in its CN as client id');
    }
    if (request.willTopic !== undefined) return refuse('MQTT_WILL_DENIED', 'claim sessions may not set a will');
    const refusal = await claimSessionRefusal(claim, clientId, registry, now, request.isConnected);
    if (refusal !== undefined) return refuse('AUTH_CLAIM_INVALID', refusal);
    return admitted({ kind: 'claim', serial: clientId }, clientId, credential.claimKey, credential.fingerprint, undefined, undefined, null, now, {});
  }

  const admission = await registry.getAdmission(credential.serial);
  // The registry row for this exact certificate: same serial, same holder, same SHA-256 fingerprint.
  if (admission === undefined || admission.device.id !== credential.deviceId || admission.certificate.fingerprint !== credential.fingerprint) {
    return refuse('AUTH_CERT_UNKNOWN', 'certificate not in registry');
  }
  const { certificate, device, policy } = admission;
  // The device's status first: "device revoked" says more than "certificate revoked" (revoking does both).
  if (device.status === 'suspended') return refuse('AUTH_DEVICE_SUSPENDED', device.statusReason ?? 'suspended');
  if (device.status === 'revoked') return refuse('AUTH_DEVICE_REVOKED', device.statusReason ?? 'revoked');
  if (certificate.status !== 'active') return refuse('AUTH_CERT_REVOKED', `certificate ${certificate.status}`);
  if (admission.issuerRetired) return refuse('AUTH_CERT_UNTRUSTED', 'the CA that signed the certificate is retired');
  if (certificate.notAfter.getTime() <= now.getTime()) return refuse('AUTH_CERT_EXPIRED', 'certificate expired');
  // [MQTT-3.1.3-8] an empty client id is also refused here: the id must be the device's.
  if (clientId !== device.id) return refuse('AUTH_CLIENT_ID_MISMATCH', `client id "${clientId.slice(0, 128)}" is not the device id`);
  if (policy === undefined) return refuse('POLICY_NOT_FOUND', 'the device policy does not exist');

  const subject: PolicySubject = { id: device.id, template: device.template, attributes: device.attributes };
  const identity: SessionIdentity = { kind: 'device', id: device.id, policy: compilePolicy(policy.document, subject) };
  // A will is a publish made on the device's behalf later, perhaps when nobody can refuse it: check it now.
  if (request.willTopic !== undefined && !decideInScope(identity, 'publish', request.willTopic).allowed) {
    return refuse('MQTT_WILL_DENIED', 'will topic not allowed by policy');
  }
  return admitted(identity, clientId, credential.serial, credential.fingerprint, policy.name, subject, certificate.replaces, now, admission.limits);
}

/**
 * A claim session speaks for a serial only while enrolling it could still succeed, which core's one
 * enrollment rule decides (core/enrollment-rules.ts): the claim has uses left, or the serial is a device
 * of the claim's own template that may be re-enrolled, or that this same claim enrolled and that retries
 * after a lost reply; never a service, and never while that identity has a session open. Allow-lists are
 * left to the enrollment itself, whose rejected reply names the serial. The claim session then lives in
 * its own client-id namespace in the broker (gateway-broker.ts), so it cannot take over or clean the
 * device's session anyway; this refuses at CONNECT what enrollment would refuse, and keeps a stolen
 * claim key from squatting on enrolled ids.
 */
async function claimSessionRefusal(claim: ClaimRecord, serial: string, registry: Registry, now: Date, isConnected: (clientId: string) => Promise<boolean>): Promise<string | undefined> {
  const [existing, template] = await Promise.all([registry.getDevice(serial), registry.getTemplate(claim.template)]);
  if (template === undefined) return `template ${claim.template} does not exist`;
  const decision = decideEnrollment({
    claim,
    template,
    serialAllowed: true,
    existing,
    // At CONNECT there is no CSR yet: a retry can only be expected from the claim that enrolled the serial.
    holdsSameKey: existing !== undefined && (await registry.getEnrollingClaim(serial)) === claim.id,
    now,
  });
  if (decision.outcome === 'refused') return `${decision.code}: ${decision.reason}`;
  if (existing !== undefined && (await isConnected(serial))) return `serial ${serial} is connected`;
  return undefined;
}

function admitted(
  identity: SessionIdentity,
  clientId: string,
  certificateSerial: string,
  certificateFingerprint: string,
  policyName: string | undefined,
  subject: PolicySubject | undefined,
  replaces: string | null,
  now: Date,
  limits: TemplateLimits,
): AdmissionResult {
  return { admitted: true, session: { identity, clientId, certificateSerial, certificateFingerprint, policyName, subject, replaces, admittedAt: now.getTime(), limits } };
}

/**
 * Whether an admitted session would still be admitted now, for sessions that may have missed an event:
 * the reason to close it, or undefined. Only what can change after CONNECT is looked at again.
 */
export async function recheckSession(session: SessionContext, registry: Registry, now: Date): Promise<string | undefined> {
  if (session.identity.kind === 'claim') {
    const claim = await registry.getClaimByCertificateSerial(session.certificateSerial);
    return claim === undefined ? 'claim no longer registered' : claimRefusal(claim, now)?.reason;
  }
  const admission = await registry.getAdmission(session.certificateSerial);
  if (admission === undefined) return 'certificate no longer in registry';
  if (admission.device.status !== 'active') return `device ${admission.device.status}`;
  if (admission.certificate.status !== 'active') return `certificate ${admission.certificate.status}`;
  if (admission.issuerRetired) return 'the CA that signed the certificate is retired';
  return admission.policy === undefined ? 'policy deleted' : undefined;
}
