/**
 * The console's only way to the gateway: the documented admin API over fetch, same origin. The operator
 * token lives in this module's memory and nowhere else — not in Web Storage, not in a cookie — so closing
 * or reloading the tab signs out, and nothing the browser keeps on disk or sends by itself carries it.
 */

// The API's shapes and values come from its contract (contract/, the schemas the routes validate with), so a
// changed answer fails this build. Types only, erased by esbuild; the values come from one small module.
import type { OperatorRole } from '../../contract/index.ts';

export type {
  AllowlistBody,
  AllowlistImport,
  AuditEntry,
  AuditFeed,
  CertificateAuthority,
  CertificateAuthorityList,
  CheckReport,
  CheckResult,
  Claim,
  ClaimPage,
  CreateClaim,
  CreatedClaim,
  Device,
  DeviceDetail,
  DevicePage,
  Explanation,
  ExplainRequest,
  NoteBody,
  OperatorRole as Role,
  Policy,
  RevokeBody,
  RotationCampaign,
  RotationCampaignList,
  Session,
  SessionList,
  StartRotation,
  Statement,
  Template,
  TemplatePage,
  Whoami,
} from '../../contract/index.ts';
export { listLimit, operatorRevocationReasons, statusNoteMaxLength } from '../../contract/constants.ts';

type Role = OperatorRole;

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

