import type { ErrorCode } from '../../core/index.ts';

/**
 * The attacker table: what each kind of attacker gets at each entry point of a running gateway. It is data,
 * not prose; test/security/attack-table.test.ts plays every cell against a real gateway, and fails when the
 * gateway has an HTTP route or an MQTT hook this table does not list. docs/THREAT-MODEL.md explains the
 * rules (R1…) and points back at the rows (by entry point) that prove them.
 */

/** What the attacker holds. `legitimate` is the control column: the rightful holder, who must succeed. */
export const capabilities = [
  'none', // raw TCP, or TLS without a client certificate
  'foreign-ca', // a CA fleetgate does not know, issuing a leaf that looks exactly like ours
  'manufacturer-ca', // the key of a registered manufacturer claim issuer: mints birth certificates at will
  'batch-claim', // a batch claim certificate and key read out of firmware
  'exhausted-claim', // a claim whose max uses are spent
  'revoked-claim', // a claim an operator revoked
  'forged-serial', // a leaf with another device's serial, CN and SAN, signed by the manufacturer CA
  'station-token', // a factory station's operator token
  'viewer-token', // a read-only operator token
  'broker-credential', // the credential a `fleetgate broker` process relays with
] as const;
export type Capability = (typeof capabilities)[number] | 'legitimate';

/** Rules of docs/THREAT-MODEL.md; every cell names the one that stops it. */
export const rules = {
  R1: 'Identity comes from the verified chain and the registry row for that exact certificate',
  R2: 'A session is admitted only for the identity its credential proves, never taking over another',
  R3: 'A claim session may only use its own enrollment topics',
  R4: 'Topics are decided by the device policy; deny wins; no match means deny',
  R5: 'Enrollment and renewal issue only for the serial and identity the credential may speak for',
  R6: 'Operator routes check a role before anything else',
  R7: 'Only a broker may relay enrollment and renewal requests',
  R8: 'Unauthenticated sockets cannot hold gateway resources',
  R9: 'Public routes reveal only public material and change nothing',
} as const;
export type RuleId = keyof typeof rules;

/** The expected result of one cell. Codes are pinned where the catalogue has them for that refusal. */
export type Expected =
  /** No session: CONNACK with a non-zero return code (`connack` when pinned), or a close without CONNACK. */
  | { readonly refused: 'connect'; readonly connack?: 2 | 3 | 4 | 5; readonly code?: ErrorCode }
  /** The session exists but this packet is refused: a PUBLISH closes the connection, a filter gets 0x80. */
  | { readonly refused: 'packet'; readonly code?: ErrorCode }
  /** Refused at CONNECT or at the packet, or answered on the `…/rejected` topic: never accepted. */
  | { readonly refused: 'mqtt'; readonly code?: ErrorCode }
  /** The server closes the connection, without a session. */
  | { readonly refused: 'closed'; readonly code?: ErrorCode }
  /** An HTTP 4xx, with the status and code pinned when known. */
  | { readonly refused: 'http'; readonly status?: number; readonly code?: ErrorCode }
  /** Succeeds, as it should for the legitimate holder (or for a credential used as designed). */
  | { readonly allowed: true }
  /** The positive control of this entry point lives in another test file. */
  | { readonly controlIn: string };

/**
 * MQTT entry points, each with the aedes hooks (or TLS server events) that guard it: the hooks are
 * installed by broker/session-hooks.ts. `publish` is aedes' own method, wrapped for
 * broker/ingress-flow-control.ts (by broker/aedes-internals.ts `interceptClientPublishes`): every admitted
 * PUBLISH passes it after authorizePublish, so it is listed like a hook.
 */
export const mqttEntryPoints = {
  'tls-handshake': { hooks: ['secureConnection'], rule: 'R8' },
  'mqtt-connect': { hooks: ['preConnect', 'authenticate'], rule: 'R2' },
  'mqtt-publish': { hooks: ['authorizePublish', 'publish'], rule: 'R4' },
  'mqtt-subscribe': { hooks: ['authorizeSubscribe'], rule: 'R4' },
  'mqtt-delivery': { hooks: ['authorizeForward'], rule: 'R4' },
  'mqtt-will': { hooks: ['preConnect', 'authorizePublish'], rule: 'R2' },
  'mqtt-enroll': { hooks: ['published'], rule: 'R5' },
  'mqtt-renew': { hooks: ['published'], rule: 'R5' },
} as const satisfies Record<string, { hooks: readonly string[]; rule: RuleId }>;
export type MqttEntry = keyof typeof mqttEntryPoints;

/**
 * MQTT 3.1.1 control packets a client may send (§2.2.1), and the entry point that judges each. Packets with
 * no entry act only on the sender's own admitted session (acknowledgements, keep-alive, leaving).
 */
export const clientPacketTypes = {
  CONNECT: 'mqtt-connect',
  PUBLISH: 'mqtt-publish',
  PUBACK: null,
  PUBREC: null,
  PUBREL: null,
  PUBCOMP: null,
  SUBSCRIBE: 'mqtt-subscribe',
  UNSUBSCRIBE: null,
  PINGREQ: null,
  DISCONNECT: null,
} as const satisfies Record<string, MqttEntry | null>;

export type OperatorRoleName = 'admin' | 'operator' | 'station' | 'viewer' | 'broker';

/** How an HTTP route is reached. */
export type RouteAccess =
  /** No credential at all: public material (R9). */
  | { readonly kind: 'public' }
  /** A TLS client certificate: the claim to enroll, the device certificate to renew (R1, R5). */
  | { readonly kind: 'certificate'; readonly presents: 'claim' | 'device' }
  /** An operator credential (Bearer token or operator certificate) with one of these roles (R6, R7). */
  | { readonly kind: 'roles'; readonly roles: readonly OperatorRoleName[] };

export interface RouteRow {
  readonly method: 'GET' | 'POST' | 'PUT';
  /** As Fastify registers it. */
  readonly url: string;
  /** A concrete path to call: parameters name things that do not exist, so an allowed call changes nothing. */
  readonly path: string;
  /** The module that registers the route and decides who may call it. */
  readonly module: string;
  readonly access: RouteAccess;
}

const readers = ['admin', 'operator', 'viewer'] as const;
const actors = ['admin', 'operator'] as const;
const admins = ['admin'] as const;
const everyone = ['admin', 'operator', 'station', 'viewer', 'broker'] as const;

const fleet = 'provisioning/api/fleet-routes.ts';
const admin = 'provisioning/api/admin-routes.ts';
const security = 'provisioning/api/security-routes.ts';
const pki = 'provisioning/api/pki-routes.ts';
const est = 'provisioning/api/est-routes.ts';
const build = 'provisioning/api/build-api.ts';
const swaggerUi = '@fastify/swagger-ui (registered in provisioning/api/build-api.ts)';
const consoleRoutes = 'provisioning/api/console-routes.ts';
const rotations = 'provisioning/api/rotation-routes.ts';
const checks = 'provisioning/api/check-routes.ts';

const pub = { kind: 'public' } as const;
const roles = (list: readonly OperatorRoleName[]) => ({ kind: 'roles', roles: list }) as const;

/** Every route of the built API (provisioning/api/build-api.ts). HEAD routes Fastify adds for GET are implied. */
export const routeTable: readonly RouteRow[] = [
  // operations and documentation
  { method: 'GET', url: '/healthz', path: '/healthz', module: build, access: pub },
  { method: 'GET', url: '/metrics', path: '/metrics', module: build, access: pub },
  { method: 'GET', url: '/openapi.json', path: '/openapi.json', module: build, access: pub },
  { method: 'GET', url: '/docs', path: '/docs', module: swaggerUi, access: pub },
  { method: 'GET', url: '/docs/', path: '/docs/', module: swaggerUi, access: pub },
  { method: 'GET', url: '/docs/json', path: '/docs/json', module: swaggerUi, access: pub },
  { method: 'GET', url: '/docs/yaml', path: '/docs/yaml', module: swaggerUi, access: pub },
  { method: 'GET', url: '/docs/static/index.html', path: '/docs/static/index.html', module: swaggerUi, access: pub },
  { method: 'GET', url: '/docs/static/swagger-initializer.js', path: '/docs/static/swagger-initializer.js', module: swaggerUi, access: pub },
  { method: 'GET', url: '/docs/static/*', path: '/docs/static/swagger-ui.css', module: swaggerUi, access: pub },
  { method: 'GET', url: '/console', path: '/console', module: consoleRoutes, access: pub },
  { method: 'GET', url: '/console/*', path: '/console/app.js', module: consoleRoutes, access: pub },
  // PKI material and revocation status
  { method: 'GET', url: '/v1/pki/ca', path: '/v1/pki/ca', module: pki, access: pub },
  { method: 'GET', url: '/v1/pki/crl', path: '/v1/pki/crl', module: pki, access: pub },
  { method: 'POST', url: '/v1/pki/ocsp', path: '/v1/pki/ocsp', module: pki, access: pub },
  { method: 'GET', url: '/v1/pki/trust-bundle', path: '/v1/pki/trust-bundle', module: pki, access: pub },
  { method: 'GET', url: '/v1/pki/cas', path: '/v1/pki/cas', module: pki, access: roles(readers) },
  { method: 'POST', url: '/v1/pki/cas/rotate', path: '/v1/pki/cas/rotate', module: pki, access: roles(admins) },
  { method: 'GET', url: '/.well-known/est/cacerts', path: '/.well-known/est/cacerts', module: est, access: pub },
  // enrollment and renewal
  { method: 'POST', url: '/v1/enroll', path: '/v1/enroll', module: 'provisioning/api/enrollment-routes.ts', access: { kind: 'certificate', presents: 'claim' } },
  { method: 'POST', url: '/v1/renew', path: '/v1/renew', module: 'provisioning/api/enrollment-routes.ts', access: { kind: 'certificate', presents: 'device' } },
  { method: 'POST', url: '/.well-known/est/simpleenroll', path: '/.well-known/est/simpleenroll', module: est, access: { kind: 'certificate', presents: 'claim' } },
  { method: 'POST', url: '/.well-known/est/simplereenroll', path: '/.well-known/est/simplereenroll', module: est, access: { kind: 'certificate', presents: 'device' } },
  { method: 'POST', url: '/v1/relay/certificate-requests', path: '/v1/relay/certificate-requests', module: 'provisioning/api/relay-routes.ts', access: roles(['broker']) },
  // fleet
  { method: 'GET', url: '/v1/devices', path: '/v1/devices', module: fleet, access: roles(readers) },
  { method: 'POST', url: '/v1/devices', path: '/v1/devices', module: fleet, access: roles(admins) },
  { method: 'GET', url: '/v1/devices/:id', path: '/v1/devices/no-such-device', module: fleet, access: roles(readers) },
  { method: 'POST', url: '/v1/devices/:id/revoke', path: '/v1/devices/no-such-device/revoke', module: fleet, access: roles(actors) },
  { method: 'POST', url: '/v1/devices/:id/suspend', path: '/v1/devices/no-such-device/suspend', module: fleet, access: roles(actors) },
  { method: 'POST', url: '/v1/devices/:id/resume', path: '/v1/devices/no-such-device/resume', module: fleet, access: roles(actors) },
  { method: 'GET', url: '/v1/sessions', path: '/v1/sessions', module: fleet, access: roles(readers) },
  { method: 'GET', url: '/v1/services', path: '/v1/services', module: fleet, access: roles(readers) },
  { method: 'POST', url: '/v1/services', path: '/v1/services', module: fleet, access: roles(admins) },
  { method: 'GET', url: '/v1/policies', path: '/v1/policies', module: fleet, access: roles(readers) },
  { method: 'GET', url: '/v1/policies/:name', path: '/v1/policies/no-such-policy', module: fleet, access: roles(readers) },
  { method: 'PUT', url: '/v1/policies/:name', path: '/v1/policies/no-such-policy', module: fleet, access: roles(admins) },
  { method: 'POST', url: '/v1/policies/:name/explain', path: '/v1/policies/no-such-policy/explain', module: fleet, access: roles(readers) },
  { method: 'GET', url: '/v1/audit', path: '/v1/audit', module: fleet, access: roles(readers) },
  // factory: templates, claims, allow-lists, manufacturer CAs
  { method: 'GET', url: '/v1/templates', path: '/v1/templates', module: admin, access: roles(['admin', 'operator', 'station', 'viewer']) },
  { method: 'POST', url: '/v1/templates', path: '/v1/templates', module: admin, access: roles(admins) },
  { method: 'POST', url: '/v1/templates/:name/allowlist', path: '/v1/templates/no-such-template/allowlist', module: admin, access: roles(['admin', 'station']) },
  { method: 'GET', url: '/v1/claims', path: '/v1/claims', module: admin, access: roles(['admin', 'operator', 'station', 'viewer']) },
  { method: 'POST', url: '/v1/claims', path: '/v1/claims', module: admin, access: roles(['admin', 'station']) },
  { method: 'POST', url: '/v1/claims/:id/revoke', path: '/v1/claims/no-such-claim/revoke', module: admin, access: roles(['admin', 'operator', 'station']) },
  { method: 'POST', url: '/v1/claim-issuers', path: '/v1/claim-issuers', module: admin, access: roles(admins) },
  // rotation campaigns
  { method: 'GET', url: '/v1/checks', path: '/v1/checks', module: checks, access: roles(readers) },
  { method: 'POST', url: '/v1/rotations', path: '/v1/rotations', module: rotations, access: roles(actors) },
  { method: 'GET', url: '/v1/rotations', path: '/v1/rotations', module: rotations, access: roles(readers) },
  { method: 'GET', url: '/v1/rotations/:id', path: '/v1/rotations/no-such-campaign', module: rotations, access: roles(readers) },
  { method: 'GET', url: '/v1/rotations/:id/devices', path: '/v1/rotations/no-such-campaign/devices', module: rotations, access: roles(readers) },
  { method: 'POST', url: '/v1/rotations/:id/pause', path: '/v1/rotations/no-such-campaign/pause', module: rotations, access: roles(actors) },
  { method: 'POST', url: '/v1/rotations/:id/resume', path: '/v1/rotations/no-such-campaign/resume', module: rotations, access: roles(actors) },
  { method: 'POST', url: '/v1/rotations/:id/close', path: '/v1/rotations/no-such-campaign/close', module: rotations, access: roles(actors) },
  // operators
  { method: 'POST', url: '/v1/tokens', path: '/v1/tokens', module: security, access: roles(admins) },
  { method: 'GET', url: '/v1/tokens', path: '/v1/tokens', module: security, access: roles(admins) },
  { method: 'POST', url: '/v1/tokens/admin/rotate', path: '/v1/tokens/admin/rotate', module: security, access: roles(admins) },
  { method: 'POST', url: '/v1/tokens/:name/revoke', path: '/v1/tokens/no-such-token/revoke', module: security, access: roles(admins) },
  { method: 'POST', url: '/v1/operators/certificates', path: '/v1/operators/certificates', module: security, access: roles(admins) },
  { method: 'GET', url: '/v1/whoami', path: '/v1/whoami', module: security, access: roles(everyone) },
  { method: 'GET', url: '/v1/audit/verify', path: '/v1/audit/verify', module: security, access: roles(readers) },
];

/** The roles that may call an operator route: the one role table the API tests read (test/api). */
export function rolesOf(method: RouteRow['method'], url: string): readonly OperatorRoleName[] {
  const route = routeTable.find((r) => r.method === method && r.url === url);
  if (route?.access.kind !== 'roles') throw new Error(`${method} ${url} is not an operator route of the table`);
  return route.access.roles;
}

export type EntryPoint = MqttEntry | `${RouteRow['method']} ${string}`;

export const routeEntry = (route: Pick<RouteRow, 'method' | 'url'>): EntryPoint => `${route.method} ${route.url}`;

/** One cell: an attacker at an entry point. `as` is the identity (client id, serial) the attacker claims. */
export interface Cell {
  readonly entry: EntryPoint;
  readonly capability: Capability;
  readonly as: string;
  readonly expect: Expected;
  readonly rule: RuleId;
}

// Identities of the fixture gateway (test/security/attacker-kit.ts).
/** Connected throughout: a victim the attacker tries to impersonate, take over or read. */
export const victim = 'dev-a';
/** The device whose serial, CN and SAN the forged leaf copies. */
export const forgedVictim = 'dev-b';
/** Enrolled with its own key, offline, in a template without re-enrollment: claims try to re-key it. */
export const enrolledOffline = 'dev-c';

const connack = (connack: 2 | 3 | 4 | 5, code?: ErrorCode): Expected => ({ refused: 'connect', connack, ...(code ? { code } : {}) });
const http = (status: number, code: ErrorCode): Expected => ({ refused: 'http', status, code });
const allowed: Expected = { allowed: true };

type Row = Readonly<Record<Capability, { readonly as: string; readonly expect: Expected }>>;

/**
 * The capabilities that hold no certificate meet every certificate entry point alike. Tokens are offered
 * anyway (as MQTT password, as Bearer header): they must not stand in for a certificate.
 */
const noCertificate = (as: string, expect: Expected) => ({
  none: { as, expect },
  'station-token': { as, expect },
  'viewer-token': { as, expect },
  'broker-credential': { as, expect },
});

/** MQTT rows. Claim sessions that are admitted by design are scoped to their own enrollment topics (R3). */
const mqttRows: Record<MqttEntry, Row> = {
  'tls-handshake': {
    // Every socket that is not an admitted MQTT session within the connect timeout is closed (R8).
    ...noCertificate('-', { refused: 'closed' }),
    'foreign-ca': { as: '-', expect: { refused: 'closed' } },
    'manufacturer-ca': { as: 'MFR-0002', expect: { refused: 'closed' } },
    'batch-claim': { as: '-', expect: { refused: 'closed' } },
    'exhausted-claim': { as: '-', expect: { refused: 'closed' } },
    'revoked-claim': { as: '-', expect: { refused: 'closed' } },
    'forged-serial': { as: forgedVictim, expect: { refused: 'closed' } },
    legitimate: { as: 'dev-tls', expect: allowed },
  },
  'mqtt-connect': {
    ...noCertificate(victim, connack(5, 'AUTH_NO_CLIENT_CERT')),
    'foreign-ca': { as: victim, expect: connack(5, 'AUTH_CERT_UNTRUSTED') },
    // A birth certificate minted for the victim's serial: never a session while the victim is connected.
    'manufacturer-ca': { as: victim, expect: { refused: 'connect' } },
    'batch-claim': { as: victim, expect: { refused: 'connect' } },
    'exhausted-claim': { as: 'SN-exhausted-1', expect: { refused: 'connect' } },
    'revoked-claim': { as: 'SN-revoked-1', expect: connack(5, 'AUTH_CLAIM_INVALID') },
    'forged-serial': { as: forgedVictim, expect: { refused: 'connect' } },
    legitimate: { as: 'dev-ok', expect: allowed },
  },
  'mqtt-publish': {
    ...noCertificate(victim, connack(5, 'AUTH_NO_CLIENT_CERT')),
    'foreign-ca': { as: victim, expect: connack(5, 'AUTH_CERT_UNTRUSTED') },
    'manufacturer-ca': { as: 'MFR-0002', expect: { refused: 'packet', code: 'ACL_CLAIM_SCOPE' } },
    'batch-claim': { as: 'SN-batch-1', expect: { refused: 'packet', code: 'ACL_CLAIM_SCOPE' } },
    'exhausted-claim': { as: 'SN-exhausted-2', expect: { refused: 'mqtt' } },
    'revoked-claim': { as: 'SN-revoked-2', expect: connack(5, 'AUTH_CLAIM_INVALID') },
    'forged-serial': { as: forgedVictim, expect: { refused: 'connect' } },
    legitimate: { as: 'dev-ok', expect: allowed },
  },
  'mqtt-subscribe': {
    ...noCertificate(victim, connack(5, 'AUTH_NO_CLIENT_CERT')),
    'foreign-ca': { as: victim, expect: connack(5, 'AUTH_CERT_UNTRUSTED') },
    'manufacturer-ca': { as: 'MFR-0002', expect: { refused: 'packet', code: 'ACL_CLAIM_SCOPE' } },
    'batch-claim': { as: 'SN-batch-2', expect: { refused: 'packet', code: 'ACL_CLAIM_SCOPE' } },
    'exhausted-claim': { as: 'SN-exhausted-3', expect: { refused: 'mqtt' } },
    'revoked-claim': { as: 'SN-revoked-3', expect: connack(5, 'AUTH_CLAIM_INVALID') },
    'forged-serial': { as: forgedVictim, expect: { refused: 'connect' } },
    legitimate: { as: 'dev-ok', expect: allowed },
  },
  'mqtt-delivery': {
    ...noCertificate(victim, connack(5, 'AUTH_NO_CLIENT_CERT')),
    'foreign-ca': { as: victim, expect: connack(5, 'AUTH_CERT_UNTRUSTED') },
    'manufacturer-ca': { as: 'MFR-0002', expect: { refused: 'packet', code: 'ACL_CLAIM_SCOPE' } },
    'batch-claim': { as: 'SN-batch-3', expect: { refused: 'packet', code: 'ACL_CLAIM_SCOPE' } },
    'exhausted-claim': { as: 'SN-exhausted-4', expect: { refused: 'mqtt' } },
    'revoked-claim': { as: 'SN-revoked-4', expect: connack(5, 'AUTH_CLAIM_INVALID') },
    'forged-serial': { as: forgedVictim, expect: { refused: 'connect' } },
    legitimate: { as: 'dev-ok', expect: allowed },
  },
  'mqtt-will': {
    ...noCertificate(victim, connack(5, 'AUTH_NO_CLIENT_CERT')),
    'foreign-ca': { as: victim, expect: connack(5, 'AUTH_CERT_UNTRUSTED') },
    'manufacturer-ca': { as: 'MFR-0002', expect: connack(5, 'MQTT_WILL_DENIED') },
    'batch-claim': { as: 'SN-batch-4', expect: connack(5, 'MQTT_WILL_DENIED') },
    'exhausted-claim': { as: 'SN-exhausted-5', expect: { refused: 'connect' } },
    'revoked-claim': { as: 'SN-revoked-5', expect: connack(5, 'AUTH_CLAIM_INVALID') },
    'forged-serial': { as: forgedVictim, expect: { refused: 'connect' } },
    legitimate: { as: 'dev-will', expect: allowed },
  },
  'mqtt-enroll': {
    ...noCertificate('SN-none-1', connack(5, 'AUTH_NO_CLIENT_CERT')),
    'foreign-ca': { as: 'SN-foreign-1', expect: connack(5, 'AUTH_CERT_UNTRUSTED') },
    // Re-keying an enrolled serial of a template without re-enrollment: a possible clone.
    'manufacturer-ca': { as: enrolledOffline, expect: { refused: 'mqtt' } },
    'batch-claim': { as: enrolledOffline, expect: { refused: 'mqtt' } },
    'exhausted-claim': { as: 'SN-exhausted-6', expect: { refused: 'mqtt' } },
    'revoked-claim': { as: 'SN-revoked-6', expect: connack(5, 'AUTH_CLAIM_INVALID') },
    'forged-serial': { as: forgedVictim, expect: { refused: 'mqtt' } },
    legitimate: { as: 'SN-mqtt-ok', expect: allowed },
  },
  'mqtt-renew': {
    ...noCertificate(victim, connack(5, 'AUTH_NO_CLIENT_CERT')),
    'foreign-ca': { as: victim, expect: connack(5, 'AUTH_CERT_UNTRUSTED') },
    'manufacturer-ca': { as: 'MFR-0002', expect: { refused: 'packet', code: 'ACL_CLAIM_SCOPE' } },
    'batch-claim': { as: 'SN-batch-5', expect: { refused: 'packet', code: 'ACL_CLAIM_SCOPE' } },
    'exhausted-claim': { as: 'SN-exhausted-7', expect: { refused: 'mqtt' } },
    'revoked-claim': { as: 'SN-revoked-7', expect: connack(5, 'AUTH_CLAIM_INVALID') },
    // The finding that started this table: the forged leaf must never renew into a genuine certificate.
    'forged-serial': { as: forgedVictim, expect: { refused: 'mqtt' } },
    legitimate: { as: 'dev-renew-mqtt', expect: allowed },
  },
};

/**
 * An enrollment route (HTTPS or EST): every claim refusal must hold on both. `n` keeps each route's serials
 * apart; `legitimate` is the serial its positive control enrolls.
 */
const enrollRow = (n: number, legitimate: string): Row => ({
  ...noCertificate(`SN-none-${n}`, http(401, 'API_CLIENT_CERT_REQUIRED')),
  'foreign-ca': { as: `SN-foreign-${n}`, expect: http(401, 'AUTH_CERT_UNTRUSTED') },
  'manufacturer-ca': { as: enrolledOffline, expect: http(409, 'ENROLL_CLONE_SUSPECTED') },
  'batch-claim': { as: enrolledOffline, expect: http(409, 'ENROLL_CLONE_SUSPECTED') },
  'exhausted-claim': { as: `SN-exhausted-${n + 6}`, expect: http(403, 'ENROLL_CLAIM_EXHAUSTED') },
  'revoked-claim': { as: `SN-revoked-${n + 6}`, expect: http(403, 'ENROLL_CLAIM_REVOKED') },
  'forged-serial': { as: forgedVictim, expect: { refused: 'http' } },
  legitimate: { as: legitimate, expect: allowed },
});

/** A renewal route (HTTPS or EST): only the current device certificate renews. */
const renewRow = (legitimate: string): Row => ({
  ...noCertificate(victim, http(401, 'API_CLIENT_CERT_REQUIRED')),
  'foreign-ca': { as: victim, expect: http(401, 'AUTH_CERT_UNTRUSTED') },
  'manufacturer-ca': { as: victim, expect: http(401, 'AUTH_CERT_UNTRUSTED') },
  'batch-claim': { as: victim, expect: http(401, 'AUTH_CERT_UNTRUSTED') },
  'exhausted-claim': { as: victim, expect: http(401, 'AUTH_CERT_UNTRUSTED') },
  'revoked-claim': { as: victim, expect: http(401, 'AUTH_CERT_UNTRUSTED') },
  'forged-serial': { as: forgedVictim, expect: { refused: 'http' } },
  legitimate: { as: legitimate, expect: allowed },
});

/** Routes that take a client certificate. `as` is the serial the attacker tries to enroll or renew. */
const certificateRows: Record<string, Row> = {
  'POST /v1/enroll': enrollRow(2, 'SN-https-ok'),
  'POST /v1/renew': renewRow('dev-renew-https'),
  'POST /.well-known/est/simpleenroll': enrollRow(3, 'SN-est-ok'),
  'POST /.well-known/est/simplereenroll': renewRow('dev-renew-est'),
};

const tokenRole: Partial<Record<Capability, OperatorRoleName>> = {
  'station-token': 'station',
  'viewer-token': 'viewer',
  'broker-credential': 'broker',
};

/** Operator routes: a role decides; a certificate without an operator record is no operator (R6, R7). */
function roleRow(route: RouteRow, allowedRoles: readonly OperatorRoleName[]): Row {
  const unauthenticated = http(401, 'API_UNAUTHENTICATED');
  const row: Record<string, { as: string; expect: Expected }> = {};
  for (const capability of capabilities) {
    const role = tokenRole[capability];
    if (role === undefined) row[capability] = { as: '-', expect: unauthenticated };
    else if (allowedRoles.includes(role)) row[capability] = { as: '-', expect: allowed };
    // A broker relaying a renewal for a device whose certificate it does not forward: refused (R7).
    else row[capability] = { as: '-', expect: http(403, 'API_FORBIDDEN') };
  }
  if (route.url === '/v1/relay/certificate-requests') {
    row['broker-credential'] = { as: forgedVictim, expect: { refused: 'http' } };
    row.legitimate = { as: '-', expect: { controlIn: 'test/cluster/cluster.test.ts' } };
  } else {
    row.legitimate = { as: 'admin', expect: allowed };
  }
  return row as unknown as Row;
}

function cellsOf(entry: EntryPoint, rule: RuleId, row: Row): Cell[] {
  return (['legitimate', ...capabilities] as const).map((capability) => ({ entry, capability, rule, as: row[capability].as, expect: row[capability].expect }));
}

/** Every cell of the table. */
export const attackTable: readonly Cell[] = [
  ...Object.entries(mqttRows).flatMap(([entry, row]) => cellsOf(entry as MqttEntry, mqttEntryPoints[entry as MqttEntry].rule, row)),
  ...routeTable.flatMap((route): Cell[] => {
    const entry = routeEntry(route);
    if (route.access.kind === 'public') return [{ entry, capability: 'none', as: '-', expect: allowed, rule: 'R9' }];
    if (route.access.kind === 'certificate') {
      const row = certificateRows[entry];
      if (row === undefined) throw new Error(`no certificate row for ${entry}`);
      return cellsOf(entry, 'R5', row);
    }
    return cellsOf(entry, route.url === '/v1/relay/certificate-requests' ? 'R7' : 'R6', roleRow(route, route.access.roles));
  }),
];
