/**
 * The console's only way to the gateway: the documented admin API over fetch, same origin. The operator
 * token lives in this module's memory and nowhere else — not in Web Storage, not in a cookie — so closing
 * or reloading the tab signs out, and nothing the browser keeps on disk or sends by itself carries it.
 */

export type Role = 'admin' | 'operator' | 'station' | 'viewer';
export type DeviceStatus = 'active' | 'suspended' | 'revoked';

export interface Whoami {
  readonly name: string;
  readonly role: Role;
}

export interface Device {
  readonly id: string;
  readonly kind: 'device' | 'service';
  readonly status: DeviceStatus;
  readonly template: string;
  readonly policy: string | null;
  readonly attributes: Record<string, string>;
  /** What the device reported at enrollment; never read by a policy. */
  readonly reportedAttributes?: Record<string, string>;
  readonly statusReason: string | null;
  readonly createdAt: string;
  readonly updatedAt: string;
}

export interface Certificate {
  readonly serial: string;
  readonly fingerprint: string;
  readonly status: 'active' | 'superseded' | 'revoked';
  readonly notBefore: string;
  readonly notAfter: string;
  readonly issuedAt: string;
  readonly revokedAt: string | null;
  readonly revocationReason: string | null;
}

export interface Session {
  readonly clientId: string;
  readonly kind: 'device' | 'claim';
  readonly certificateSerial: string;
  readonly remoteAddress: string | null;
  readonly connectedAt: string;
}

export interface DeviceDetail {
  readonly device: Device;
  readonly effectivePolicy: string | null;
  readonly certificates: Certificate[];
  readonly session: Session | null;
}

export interface Statement {
  readonly sid?: string;
  readonly effect: 'allow' | 'deny';
  readonly actions: string[];
  readonly topics: string[];
}

export interface Policy {
  readonly name: string;
  readonly version: number;
  readonly updatedAt: string;
  readonly document: { statements: Statement[] };
}

export interface Explanation {
  readonly allowed: boolean;
  readonly code: string | null;
  readonly effect: 'allow' | 'deny' | 'no-match' | null;
  readonly statementIndex: number | null;
  readonly pattern: string | null;
  readonly statement: Statement | null;
  readonly effectivePolicy: string | null;
  readonly policy: string;
}

export interface AuditEntry {
  readonly id: number;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  readonly result: 'ok' | 'refused';
  readonly code: string | null;
  readonly deviceId: string | null;
  readonly detail: Record<string, unknown> | null;
}

export interface Template {
  readonly name: string;
  readonly policy: string;
  readonly validityDays: number;
  readonly keyTypes: string[];
  readonly requireAllowlist: boolean;
  readonly allowReenroll: boolean;
}

export interface Claim {
  readonly claimId: string;
  readonly template: string;
  readonly kind: 'claim-certificate' | 'manufacturer-ca';
  readonly maxUses: number | null;
  readonly uses: number;
  readonly status: string;
  readonly expiresAt: string;
  readonly createdAt: string;
}

export interface CreatedClaim {
  readonly claimId: string;
  readonly template: string;
  readonly maxUses: number | null;
  readonly expiresAt: string;
  readonly certificate: string;
  readonly privateKey: string;
  readonly ca: string;
}

/** An API refusal, with the stable code the README documents. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let token: string | undefined;
let onSignedOut: () => void = () => {};

export function setToken(value: string | undefined): void {
  token = value;
}

/** Called when the API answers 401: the token was revoked or mistyped; back to the sign-in form. */
export function whenSignedOut(callback: () => void): void {
  onSignedOut = callback;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, { method, headers, cache: 'no-store', ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await response.text();
  const parsed: unknown = text === '' ? undefined : JSON.parse(text);
  if (!response.ok) {
    const { code = 'HTTP_' + response.status, message = response.statusText } = (parsed ?? {}) as { code?: string; message?: string };
    if (response.status === 401 && token !== undefined) {
      token = undefined;
      onSignedOut();
    }
    throw new ApiError(response.status, code, message);
  }
  return parsed as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body: unknown) => api<T>('POST', path, body);

/** Query strings without empty values. */
export function query(params: Record<string, string | number | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value !== undefined && value !== '') search.set(key, String(value));
  const text = search.toString();
  return text === '' ? '' : `?${text}`;
}

/** What each role may do, as the API's route table says; the console hides what the API would refuse. */
export const can = {
  readFleet: (role: Role) => role !== 'station',
  changeStatus: (role: Role) => role === 'admin' || role === 'operator',
  issueClaims: (role: Role) => role === 'admin' || role === 'station',
  revokeClaims: (role: Role) => role !== 'viewer',
};

/** RFC 5280 reasons an operator may give (provisioning/revoke-device.ts). */
export const revocationReasons = ['keyCompromise', 'cessationOfOperation', 'affiliationChanged', 'superseded', 'privilegeWithdrawn', 'unspecified'] as const;
