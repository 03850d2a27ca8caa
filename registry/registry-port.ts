import type { ErrorCode, OperatorRole, PolicyDocument, RotationCampaignAction, RotationCampaignState, RotationProgress, RotationSelector, TemplateLimits } from '../core/index.ts';

/**
 * The device registry: the one source of truth for who may connect and what they may do. Every method is
 * async so the same callers work on the embedded SQLite database and on PostgreSQL. Writes that belong
 * together (a device, its certificate and the audit entry) happen in one transaction: a refusal or a crash
 * never leaves half of them behind.
 */

export type IdentityKind = 'device' | 'service';
export type DeviceStatus = 'active' | 'suspended' | 'revoked';
export type CertificateStatus = 'active' | 'superseded' | 'revoked';
export type ClaimStatus = 'active' | 'revoked';
/** A CA's role and rotation state (core/pki/ca-rotation.ts). */
import type { CaRole, CaState, RotatableRole } from '../core/index.ts';
export type { CaRole, CaState };

export interface DeviceRecord extends Required<NewDevice> {
  readonly status: DeviceStatus;
  readonly statusReason: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface CertificateRecord extends Required<NewCertificate> {
  readonly deviceId: string;
  readonly status: CertificateStatus;
  readonly issuedAt: Date;
  readonly revokedAt: Date | null;
  /** RFC 5280 §5.3.1 reason name (keyCompromise, superseded, …). */
  readonly revocationReason: string | null;
}

export interface TemplateRecord extends Required<NewTemplate> {
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface PolicyRecord {
  readonly name: string;
  readonly document: PolicyDocument;
  /** Starts at 1 and grows by one on every change. */
  readonly version: number;
  readonly updatedAt: Date;
}

export interface ClaimRecord extends Required<NewClaim> {
  readonly uses: number;
  readonly status: ClaimStatus;
  readonly createdAt: Date;
}

export type AuditResult = 'ok' | 'refused';

/** What a caller records. `at` defaults to now. */
export interface AuditInput {
  readonly actor: string;
  readonly action: string;
  readonly result: AuditResult;
  readonly code?: ErrorCode;
  readonly deviceId?: string;
  readonly detail?: Readonly<Record<string, unknown>>;
  readonly at?: Date;
}

export interface AuditEntry extends AuditInput {
  readonly id: number;
  readonly at: Date;
}

export interface AuditQuery {
  readonly deviceId?: string;
  readonly actor?: string;
  readonly action?: string;
  readonly result?: AuditResult;
  readonly since?: Date;
  readonly until?: Date;
  /** Entries with an id greater than this (for following the log). */
  readonly afterId?: number;
  /** Default 100, at most 1000. Newest first unless `afterId` is set. */
  readonly limit?: number;
}

/**
 * The outcome of walking the audit hash chain from the first entry to the last. `firstBrokenId` is the
 * lowest id at which the stored log differs from what was written: a changed entry, or the first of the
 * missing ones when entries were removed (then no entry with that id exists any more).
 */
export interface AuditVerification {
  readonly ok: boolean;
  /** Entries verified intact: all of them when ok, those before the break otherwise. */
  readonly entries: number;
  readonly firstBrokenId?: number;
  readonly reason?: string;
  /**
   * The newest intact entry and its hash. Anyone with write access to the database can rewrite the whole
   * chain consistently; kept somewhere else and passed back as an anchor later, this head exposes that.
   */
  readonly head?: AuditAnchor;
}

/** An audit entry's id and hash as recorded at some point (a past `head`). */
export interface AuditAnchor {
  readonly id: number;
  readonly hash: string;
}

// The roles are core's (core/operator-roles.ts), published to the CLI and console by contract/constants.ts.
export { operatorRoles, type OperatorRole } from '../core/index.ts';

/** A personal operator token. The registry holds only its SHA-256; the token itself is shown once, at creation. */
export interface OperatorTokenRecord {
  readonly name: string;
  readonly role: OperatorRole;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
}

export interface DeviceQuery {
  readonly status?: DeviceStatus;
  readonly kind?: IdentityKind;
  readonly template?: string;
  /** Ids starting with this prefix. */
  readonly prefix?: string;
  /** Ids sorting after this one (keyset paging). */
  readonly after?: string;
  /** Default 100, at most 1000. */
  readonly limit?: number;
}

export interface NewDevice {
  readonly id: string;
  readonly kind: IdentityKind;
  readonly template: string;
  /** Overrides the template's policy when set (service identities, one-off devices). */
  readonly policy?: string | null;
  /**
   * Trusted attributes, the only ones `${device.attributes.NAME}` in a policy reads: set by an operator at
   * registration or taken from the serial's allow-list row at enrollment (README "Enrollment and renewal").
   */
  readonly attributes?: Readonly<Record<string, string>>;
  /** What the device said about itself in its enrollment request: shown to operators, never in a policy. */
  readonly reportedAttributes?: Readonly<Record<string, string>>;
}

/** An allow-list entry: a serial, or a serial with the trusted attributes its device will get when it enrolls. */
export type AllowlistEntry = string | { readonly serial: string; readonly attributes?: Readonly<Record<string, string>> };

export interface NewCertificate {
  /** Lower-case hex without a leading zero octet (core normaliseSerial). */
  readonly serial: string;
  readonly fingerprint: string;
  readonly publicKeyHash: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly pem: string;
  /**
   * For a renewal: the serial of the device's current certificate (which must be active), superseded by
   * this one once the device first connects with it.
   */
  readonly replaces?: string | null;
  /** Id of the CA that signed it (certificate_authorities); null only for rows from before CAs were recorded. */
  readonly issuerCa?: string | null;
}

export interface NewCertificateAuthority {
  /** The first 16 hex digits of the SHA-256 fingerprint: what operators type (`--select ca=<id>`). */
  readonly id: string;
  readonly role: CaRole;
  readonly state: CaState;
  /** SHA-256 of the certificate, lower-case hex. */
  readonly fingerprint: string;
  readonly subject: string;
  /** The CA row that signed it; null for a self-signed root. */
  readonly issuerId: string | null;
  /** For a cross-certificate: the root whose key and name it carries. */
  readonly crossOf: string | null;
  readonly pem: string;
  /** Where provisioning keeps its private key (a file name in pki/, or a PKCS#11 URI); null for cross-certificates. */
  readonly keyRef: string | null;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface CertificateAuthorityRecord extends Required<NewCertificateAuthority> {
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** What a CA still vouches for: unexpired active certificates and usable claims it signed, and CAs under it. */
export interface CaUsage {
  readonly certificates: number;
  readonly claims: number;
  readonly authorities: number;
}

/** One rotation stage, written atomically: rows added, rows moved between states, and a CA that must be unused. */
export interface CaChange {
  readonly add?: readonly NewCertificateAuthority[];
  readonly transitions?: readonly { readonly id: string; readonly from: CaState; readonly to: CaState }[];
  /** A prepare: refused with PKI_CA_ROTATION_CONFLICT unless, under the lock, the stage would still make a CA of `role` under `parentId`. */
  readonly preparedFrom?: { readonly role: RotatableRole; readonly parentId: string };
  /** Refused with PKI_CA_IN_USE (detail: the usage) unless this CA vouches for nothing unexpired at `now`. */
  readonly mustBeUnused?: { readonly id: string; readonly now: Date };
  /** Keys moved to another key store (`fleetgate init --import-keys-to`): refused with PKI_CA_ROTATION_CONFLICT unless each row still has `from`. */
  readonly keyRefs?: readonly { readonly id: string; readonly from: string; readonly to: string }[];
  readonly audit: AuditInput;
}

export interface NewTemplate {
  readonly name: string;
  readonly policy: string;
  readonly validityDays: number;
  /** Allowed CSR key types, e.g. "EC P-256" (core allowedKeyTypes). */
  readonly keyTypes: readonly string[];
  readonly requireAllowlist: boolean;
  readonly allowReenroll: boolean;
  /** Traffic limits for devices of this template; `{}` (the default) means the gateway defaults. */
  readonly limits?: TemplateLimits;
  /**
   * Days after its expiry during which a certificate of this template may still renew, once, over
   * POST /v1/renew or EST simplereenroll (README "Renewal after expiry"); 0 (the default): never.
   */
  readonly renewAfterExpiryDays?: number;
}

export interface NewClaim {
  readonly id: string;
  readonly template: string;
  /**
   * How sessions present this claim: the serial of a claim certificate, or `issuer:<sha256>` for a
   * manufacturer CA whose birth certificates act as claims (see claimKeyForIssuer).
   */
  readonly certificateSerial: string;
  /** Manufacturer CA certificate (PEM) for birth-certificate claims; null for claim certificates we issued. */
  readonly issuerPem?: string | null;
  /** Id of our claim CA that signed the claim certificate; null for manufacturer claims. */
  readonly issuerCa?: string | null;
  readonly maxUses: number | null;
  readonly expiresAt: Date;
}

/** Everything the broker needs to admit a session, read in one go. */
export interface Admission {
  readonly certificate: CertificateRecord;
  readonly device: DeviceRecord;
  /** The effective policy (device override, else the template's); undefined if it was deleted. */
  readonly policy: PolicyRecord | undefined;
  /** The traffic limits of the device's template (`{}` when the template is gone: gateway defaults apply). */
  readonly limits: TemplateLimits;
  /**
   * The CA that signed the certificate is retired (README "Rotating certificates and CAs"): refused even by
   * a process whose trust store has not heard of the retirement yet.
   */
  readonly issuerRetired: boolean;
}

export interface EnrollWithClaimInput {
  readonly claimId: string;
  readonly device: NewDevice;
  readonly certificate: NewCertificate;
  readonly requireAllowlist: boolean;
  readonly allowReenroll: boolean;
  readonly audit: AuditInput;
}

/** How far a campaign's scheduler got with one device (core/rotation-campaign.ts RotationProgress). */
export type RotationDeviceState = 'pending' | 'offline' | 'notified';

export interface RotationCampaignRecord {
  readonly id: string;
  /** As the operator wrote it (core formatRotationSelector; an id list is summarised). */
  readonly selector: string;
  readonly ratePerSecond: number;
  readonly state: RotationCampaignState;
  readonly createdBy: string;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** When it completed or was closed. */
  readonly endedAt: Date | null;
  readonly progress: RotationProgress;
}

/** Where a device stands in its campaign, as the progress counts it: `renewed` and `failed` win over the scheduler's state. */
export type RotationOutcome = RotationDeviceState | 'renewed' | 'failed';

export interface RotationDeviceRow {
  readonly deviceId: string;
  /** How far the scheduler and the brokers got with it. */
  readonly state: RotationDeviceState;
  readonly outcome: RotationOutcome;
  /** When the scheduler reached it, and when a broker delivered the command (null: not yet). */
  readonly dispatchedAt: Date | null;
  readonly notifiedAt: Date | null;
}

export interface RotationDeviceQuery {
  readonly outcome?: RotationOutcome;
  /** Device ids sorting after this one (keyset paging). */
  readonly after?: string;
  readonly limit?: number;
}

/** A device the scheduler reached: `renewed` when it already holds a certificate issued since the campaign started. */
export interface RotationDispatch {
  readonly deviceId: string;
  readonly renewed: boolean;
  readonly at: Date;
}

/** What the fleet health checks (core/fleet-checks.ts) ask the registry, answered with SQL counts. */
export interface FleetCheckFactsQuery {
  readonly now: Date;
  /** Active device certificates expiring after `now` and up to this time are counted. */
  readonly expiringBefore: Date;
  /** Device ids listed per group (the count covers all). */
  readonly sample: number;
  /** Device ids with a live session: those whose identity is not active are returned. */
  readonly liveDeviceIds: readonly string[];
}

/** Active devices (kind `device`) of one template whose current certificate meets a condition. */
export interface CertificateGroup {
  readonly template: string;
  readonly count: number;
  readonly sample: readonly string[];
}

export interface FleetCheckFacts {
  /** Current certificates (no newer active one for the device) expiring in (now, expiringBefore]. */
  readonly expiring: readonly CertificateGroup[];
  /** Current certificates past two thirds of their validity, not yet expired, with no renewal issued. */
  readonly renewalOverdue: readonly CertificateGroup[];
  /** Of `liveDeviceIds`, the identities that are suspended or revoked. */
  readonly inactive: readonly { readonly id: string; readonly status: DeviceStatus }[];
  /** Policies set on device identities (not services) as overrides, with how many non-revoked devices have each. */
  readonly policyOverrides: readonly { readonly policy: string; readonly devices: number }[];
}

export interface Registry {
  // devices and their certificates
  getDevice(id: string): Promise<DeviceRecord | undefined>;
  listDevices(query?: DeviceQuery): Promise<DeviceRecord[]>;
  /**
   * Registers the device if it is new (the template must exist) and records its certificate, in one
   * transaction with the audit entry. Refuses with PKI_PUBLIC_KEY_IN_USE when the key is bound to another
   * device, DEVICE_EXISTS when `mustBeNew` and the id is taken, TEMPLATE_NOT_FOUND otherwise. With
   * `onlySuccessor` (a renewal after expiry, README "Renewal after expiry") the certificate named in
   * `certificate.replaces` must have no successor yet, whatever its status: RENEW_EXPIRED_ALREADY_RENEWED.
   */
  registerCertificate(input: { device: NewDevice; certificate: NewCertificate; mustBeNew: boolean; audit: AuditInput; onlySuccessor?: boolean }): Promise<CertificateRecord>;
  /** Changes status with the audit entry; revoking also revokes every non-revoked certificate. */
  setDeviceStatus(input: { id: string; status: DeviceStatus; reason: string | null; audit: AuditInput }): Promise<DeviceRecord>;
  getCertificate(serial: string): Promise<CertificateRecord | undefined>;
  listCertificates(deviceId: string): Promise<CertificateRecord[]>;
  findCertificatesByPublicKey(publicKeyHash: string): Promise<CertificateRecord[]>;
  getAdmission(certificateSerial: string): Promise<Admission | undefined>;
  /**
   * What a CRL must list, oldest first: every revoked or superseded certificate still within its validity,
   * and the active certificates of suspended devices with reason `certificateHold`, dated at the device's
   * last status change (a resume removes them again).
   */
  listRevokedCertificates(now: Date): Promise<{ serial: string; revokedAt: Date; reason: string; issuerCa: string | null }[]>;
  /**
   * Claim-certificate enrollment, in one transaction with its audit entry. Whether the claim may enroll the
   * serial is decided by core decideEnrollment on the rows read in that transaction (claim, identity under
   * the serial, allow-list row, same-key certificate): ENROLL_CLAIM_UNKNOWN when the claim row is gone,
   * otherwise that function's refusal. On `enroll` the device is created under the claim's template; on
   * `reenroll` (an active device of that template, template allows it) its active certificates become
   * superseded. One use is consumed. On `repeat` (the device already holds an active certificate for the
   * same public key) that certificate is returned with `repeated: true` and nothing is written.
   * The device's trusted `attributes` are those of its allow-list row (a new device; none without a row);
   * `device.attributes` from the caller is ignored. `device.reportedAttributes` is stored as reported.
   */
  enrollWithClaim(input: EnrollWithClaimInput): Promise<{ certificate: CertificateRecord; repeated: boolean }>;
  /**
   * The claim whose enrollment (or re-enrollment) of this device was accepted last; undefined for an
   * identity no claim enrolled. Admission uses it to let the same claim retry after a lost reply.
   */
  getEnrollingClaim(deviceId: string): Promise<string | undefined>;
  /**
   * Called when a device first connects with `serial`: if it replaces another certificate that is still
   * active, that one becomes superseded (with the audit entry). Returns the superseded serial, if any.
   */
  supersedeReplaced(serial: string, audit: AuditInput): Promise<string | undefined>;

  // templates and policies
  getTemplate(name: string): Promise<TemplateRecord | undefined>;
  listTemplates(): Promise<TemplateRecord[]>;
  /** Creates or replaces; the policy must exist (POLICY_NOT_FOUND). */
  putTemplate(template: NewTemplate, audit: AuditInput): Promise<TemplateRecord>;
  getPolicy(name: string): Promise<PolicyRecord | undefined>;
  listPolicies(): Promise<PolicyRecord[]>;
  /** Creates (version 1) or replaces (version + 1). */
  putPolicy(name: string, document: PolicyDocument, audit: AuditInput): Promise<PolicyRecord>;

  // claims
  createClaim(claim: NewClaim, audit: AuditInput): Promise<ClaimRecord>;
  getClaim(id: string): Promise<ClaimRecord | undefined>;
  getClaimByCertificateSerial(serial: string): Promise<ClaimRecord | undefined>;
  /** Active manufacturer-CA claims, whose CA certificates the TLS listeners must trust. */
  listClaimIssuers(): Promise<ClaimRecord[]>;
  listClaims(): Promise<ClaimRecord[]>;
  /** No further enrollment with this claim (final); CLAIM_NOT_FOUND if unknown. */
  revokeClaim(id: string, audit: AuditInput): Promise<ClaimRecord>;

  // certificate authorities (README "Rotating certificates and CAs")
  listCertificateAuthorities(): Promise<CertificateAuthorityRecord[]>;
  /**
   * Records the first CAs of an installation (from before the table existed, or just created) and labels the
   * certificates and claims signed before with them. Does nothing and returns false if any CA is recorded.
   */
  importCertificateAuthorities(input: { cas: readonly NewCertificateAuthority[]; firstIssuers: { readonly device: string; readonly claim: string }; audit: AuditInput }): Promise<boolean>;
  /** Applies one rotation stage; refused with PKI_CA_ROTATION_CONFLICT if a row is no longer in its `from` state. */
  changeCertificateAuthorities(change: CaChange): Promise<CertificateAuthorityRecord[]>;
  /** What `caId` still vouches for at `now` (see CaUsage). */
  certificateAuthorityUsage(caId: string, now: Date): Promise<CaUsage>;

  // serial allow-lists, per template
  /**
   * Adds serials, with the audit entry; TEMPLATE_NOT_FOUND if the template is unknown, DEVICE_ID_INVALID or
   * ATTRIBUTE_INVALID (nothing imported) for a bad entry. A serial already listed is not added again; if the
   * entry carries attributes they replace the row's. `added` counts new serials only.
   */
  importAllowlist(template: string, entries: readonly AllowlistEntry[], audit: AuditInput): Promise<{ added: number; total: number }>;
  isSerialAllowed(template: string, serial: string): Promise<boolean>;

  // operator tokens
  /**
   * Stores a token by its SHA-256 (lower-case hex), with the audit entry. Refuses a name in use, even by a
   * revoked token (REQUEST_INVALID until the catalogue has OPERATOR_TOKEN_EXISTS), and the name `admin`,
   * which belongs to the bootstrap token.
   */
  createOperatorToken(input: { name: string; role: OperatorRole; tokenHash: string; audit: AuditInput }): Promise<OperatorTokenRecord>;
  /** The token with this hash, revoked or not (the caller decides what a revoked token means). */
  findOperatorToken(tokenHash: string): Promise<OperatorTokenRecord | undefined>;
  /** Every token, revoked ones included, by name. */
  listOperatorTokens(): Promise<OperatorTokenRecord[]>;
  /** Final; revoking again changes nothing but is audited. Unknown names are refused. */
  revokeOperatorToken(name: string, audit: AuditInput): Promise<OperatorTokenRecord>;

  // audit log (append-only: there is no update or delete; entries are hash-chained)
  /**
   * Appends in a write transaction (with any queued entries before it), so concurrent writers (other
   * processes too) never fork the chain; committed (on SQLite, fsynced) when it resolves. For entries a
   * caller answers after: an operator's action, a refusal the reply reports.
   */
  appendAudit(entry: AuditInput): Promise<AuditEntry>;
  /**
   * For entries nobody waits for (a CONNECT, a sampled refusal, a discarded will): queued and written with
   * others in one transaction, soon (the next turn of the event loop, or after the batch being written);
   * any write of this registry first writes what was queued before it was called, so an entry is in the
   * chain before every write made after it. Never throws: an entry that cannot be written (the registry closed, the database gone) goes to
   * `onError`. A crash can lose the entries of the last few milliseconds; close() writes all of them.
   */
  queueAudit(entry: AuditInput, onError: (error: unknown) => void): void;
  /** Resolves once every entry queued before the call is written (or reported to its onError). */
  flushAudit(): Promise<void>;
  /** Sees every entry this registry queued before the call (queryAudit and verifyAudit flush first). */
  queryAudit(query?: AuditQuery): Promise<AuditEntry[]>;
  /**
   * Walks the whole chain in id order and reports the first break; with an anchor, also a chain that no
   * longer contains that entry with that hash. Reads in batches; writers are not blocked.
   */
  verifyAudit(options?: { anchor?: AuditAnchor }): Promise<AuditVerification>;

  // rotation campaigns (README "Rotation campaigns")
  /**
   * Creates a running campaign over the devices the selector matches now (never services or revoked
   * devices), with the audit entry. Refuses TEMPLATE_NOT_FOUND, ROTATION_SELECTOR_INVALID (ids that are not
   * selectable devices, or a `ca` that is not a device CA or root of this gateway)
   * and ROTATION_SELECTION_EMPTY.
   */
  createRotationCampaign(input: { id: string; selector: RotationSelector; ratePerSecond: number; audit: AuditInput }): Promise<RotationCampaignRecord>;
  getRotationCampaign(id: string): Promise<RotationCampaignRecord | undefined>;
  /** Newest first; `states` narrows. */
  listRotationCampaigns(query?: { states?: readonly RotationCampaignState[] }): Promise<RotationCampaignRecord[]>;
  /** pause, resume or close (core rotationCampaignTransition), with the audit entry; ROTATION_CAMPAIGN_NOT_FOUND, ROTATION_CAMPAIGN_STATE. */
  changeRotationCampaign(id: string, action: RotationCampaignAction, audit: AuditInput): Promise<RotationCampaignRecord>;
  /** A running or paused campaign whose every device renewed becomes completed (with the audit entry); returns it if it did. */
  completeRotationCampaign(id: string, audit: AuditInput): Promise<RotationCampaignRecord | undefined>;
  /**
   * The scheduler's step: up to `limit` devices still pending in a running campaign are marked reached
   * (`offline` until a broker delivers the command), in device id order. Nothing when it is not running.
   */
  dispatchRotation(campaignId: string, limit: number): Promise<RotationDispatch[]>;
  /** Running campaigns that reached this device and wait for it: reached, not renewed since, no refused renewal since notified. */
  pendingRotations(deviceId: string): Promise<{ campaignId: string; state: 'offline' | 'notified' }[]>;
  /**
   * A broker wrote the rotate command to the device's live session: the device becomes notified (the first
   * time, with the audit entry). True when this was its first notification by this campaign.
   */
  markRotationNotified(campaignId: string, deviceId: string, audit: AuditInput): Promise<boolean>;
  /** The campaign's devices by id, each with its outcome and when it was reached and notified; `outcome` narrows. */
  listRotationDevices(campaignId: string, query?: RotationDeviceQuery): Promise<RotationDeviceRow[]>;
  /** Counts for the fleet health checks; reads only (no row per device leaves the database but the samples). */
  fleetCheckFacts(query: FleetCheckFactsQuery): Promise<FleetCheckFacts>;

  /** Writes the queued audit entries, then closes. */
  close(): Promise<void>;
}
