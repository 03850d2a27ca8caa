import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  activeCa,
  anchorsFromCas,
  type CaCredential,
  type Clock,
  createIssuingCa,
  createRootCa,
  crossCertify,
  describeCertificate,
  FleetgateError,
  isTrusted,
  planRotation,
  type RotatableRole,
  type RotationPlan,
  type RotationStage,
  trustBundleOf,
  x509,
} from '../core/index.ts';
import type { CertificateAuthorityRecord, NewCertificateAuthority, Registry } from '../registry/index.ts';
import { type CaKey, type KeyStores, openKeyStores } from './key-store.ts';
import type { Pki } from './pki-store.ts';

/** An issuing CA ready to sign: its row id, certificate and key, and the chain sent with what it signs. */
export interface IssuingCa {
  readonly id: string;
  readonly credential: CaCredential;
  /** The issuing CA then its root, PEM. */
  readonly chainPem: string;
}

export interface RotationOutcome {
  readonly role: RotatableRole;
  readonly stage: RotationStage;
  /** The CA the stage made, activated or retired. */
  readonly ca: CertificateAuthorityRecord;
  readonly cas: readonly CertificateAuthorityRecord[];
}

/**
 * The CAs of an installation and their keys, as provisioning holds them (README "Rotating certificates and
 * CAs"). Certificates and states live in the registry, so every process follows one rotation; the keys are
 * in a key store (provisioning/key-store.ts: files in `pki/` or a PKCS#11 token), named by each row's
 * key_ref, loaded only here. What a stage may do is core's rule
 * (core/pki/ca-rotation.ts planRotation); this makes the certificates and keys and records the result.
 */
export interface CertificateAuthorities {
  /** The CAs as last read; reload() reads them again (after any process's `trust.changed`). */
  list(): readonly CertificateAuthorityRecord[];
  reload(): Promise<void>;
  /** The active CA of a role, with its key: what signs every new certificate of that role. */
  issuer(role: 'device' | 'claim'): Promise<IssuingCa>;
  /** Any CA with its key (a retired device CA still signs its CRL and OCSP answers until its certificates expire). */
  credential(id: string): Promise<CaCredential>;
  /** The chain sent with a certificate `caId` signed (the active device CA's for rows from before CAs were recorded). */
  chainFor(caId: string | null): string;
  /** Trusted roots, PEM: what a new device or operator should trust (`ca.crt`). */
  rootsPem(): string;
  /** Every trusted root, cross-certificate and issuing CA, PEM (GET /v1/pki/trust-bundle, EST /cacerts, `$fleetgate/trust/bundle`). */
  trustBundle(): string;
  /** Runs one rotation stage for `actor`, audited. The caller tells every process (`trust.changed`). */
  rotate(role: RotatableRole, stage: RotationStage, actor: string): Promise<RotationOutcome>;
}

export interface CertificateAuthoritiesDeps {
  readonly registry: Registry;
  readonly pkiDir: string;
  /** The first CAs, from the files `fleetgate init` wrote: recorded once if the registry has none. */
  readonly initial: Pick<Pki, 'root' | 'deviceCa' | 'claimCa'>;
  /** Their keys' references (key_ref of their rows): file names in `pkiDir`, or PKCS#11 URIs. */
  readonly initialKeyFiles: { readonly root: string; readonly deviceCa: string; readonly claimCa: string };
  /** Loads keys by key_ref and makes new ones; default: the stores of `pkiDir`. */
  readonly keyStores?: KeyStores;
  readonly clock: Clock;
  /** Re-issues the server certificate under the active root (a root rotation's activate and retire). */
  readonly renewServerCertificate: (root: CaCredential) => Promise<void>;
}

/** How stale the CA list may be when a certificate is signed (one small query per this much time at most). */
const issuerFreshnessMs = 5_000;

/** A CA's id: the first 16 hex digits of its SHA-256 fingerprint, short enough to type, unique in practice. */
export const caIdOf = (fingerprint: string): string => fingerprint.slice(0, 16);

const roleNames: Record<RotatableRole, string> = { root: 'fleetgate root CA', device: 'fleetgate device CA', claim: 'fleetgate claim CA' };

export async function openCertificateAuthorities(deps: CertificateAuthoritiesDeps): Promise<CertificateAuthorities> {
  const { registry, clock } = deps;
  // The first CAs' keys are in memory already (loadOrCreatePki read them); others are read on first use.
  const keyStores = deps.keyStores ?? openKeyStores(deps.pkiDir);
  const keys = new Map<string, Promise<CaKey>>([
    [deps.initialKeyFiles.root, Promise.resolve(deps.initial.root)],
    [deps.initialKeyFiles.deviceCa, Promise.resolve(deps.initial.deviceCa)],
    [deps.initialKeyFiles.claimCa, Promise.resolve(deps.initial.claimCa)],
  ]);
  let cas: readonly CertificateAuthorityRecord[] = [];
  const parsed = new Map<string, x509.X509Certificate>();

  const certificateOf = (ca: CertificateAuthorityRecord): x509.X509Certificate => {
    let certificate = parsed.get(ca.id);
    if (certificate === undefined) parsed.set(ca.id, (certificate = new x509.X509Certificate(ca.pem)));
    return certificate;
  };
  const byId = (id: string): CertificateAuthorityRecord => {
    const ca = cas.find((candidate) => candidate.id === id);
    if (ca === undefined) throw new FleetgateError('PKI_CA_MISSING', { detail: { caId: id } });
    return ca;
  };
  const credential = async (id: string): Promise<CaCredential> => {
    const ca = byId(id);
    if (ca.keyRef === null) throw new FleetgateError('PKI_CA_MISSING', { detail: { caId: id, reason: 'no key' } });
    const keyRef = ca.keyRef;
    let key = keys.get(keyRef);
    if (key === undefined) {
      key = keyStores.load(keyRef).catch((error: unknown) => {
        if (error instanceof FleetgateError && error.code === 'PKI_CA_MISSING') throw new FleetgateError('PKI_CA_MISSING', { detail: { caId: id, key: keyRef } });
        throw error;
      });
      keys.set(keyRef, key);
      key.catch(() => keys.delete(keyRef));
    }
    const { privateKey, crypto } = await key;
    return crypto === undefined ? { certificate: certificateOf(ca), privateKey } : { certificate: certificateOf(ca), privateKey, crypto };
  };
  const chainFor = (caId: string | null): string => {
    const ca = caId === null ? activeCa(cas, 'device') : byId(caId);
    const root = ca.issuerId === null ? undefined : cas.find((candidate) => candidate.id === ca.issuerId);
    return ca.pem + (root?.pem ?? '');
  };
  const trusted = (role: CertificateAuthorityRecord['role']) => cas.filter((ca) => ca.role === role && isTrusted(ca));
  const trustBundle = () => trustBundleOf(anchorsFromCas(cas, []));

  let loadedAt = 0;
  const reload = async () => {
    loadedAt = clock.now().getTime();
    cas = await registry.listCertificateAuthorities();
    // pki/trust-bundle.pem: what the CLI verifies the API with (cli/operator-context.ts) and operators hand to devices.
    const bundlePath = join(deps.pkiDir, 'trust-bundle.pem');
    if (cas.length > 0 && existsSync(deps.pkiDir) && (!existsSync(bundlePath) || readFileSync(bundlePath, 'utf8') !== trustBundle())) {
      // Written aside, then renamed: a reader (or another process sharing pki/) never sees half a bundle.
      const aside = `${bundlePath}.${process.pid}.tmp`;
      writeFileSync(aside, trustBundle(), { mode: 0o644 });
      renameSync(aside, bundlePath);
    }
  };
  await reload();
  if (cas.length === 0) {
    const root = await describeCa(deps.initial.root.certificate, { role: 'root', issuerId: null, keyRef: deps.initialKeyFiles.root });
    const device = await describeCa(deps.initial.deviceCa.certificate, { role: 'device', issuerId: root.id, keyRef: deps.initialKeyFiles.deviceCa });
    const claim = await describeCa(deps.initial.claimCa.certificate, { role: 'claim', issuerId: root.id, keyRef: deps.initialKeyFiles.claimCa });
    // Another process may have recorded them first (importCertificateAuthorities decides under the write lock).
    await registry.importCertificateAuthorities({
      cas: [root, device, claim],
      firstIssuers: { device: device.id, claim: claim.id },
      audit: { actor: 'system', action: 'ca.import', result: 'ok' },
    });
    await reload();
  }

  const makeCa = async (plan: Extract<RotationPlan, { stage: 'prepare' }>): Promise<NewCertificateAuthority[]> => {
    const parent = await credential(plan.parent.id);
    const generation = cas.filter((ca) => ca.role === plan.role).length + 1;
    const base = certificateOf(activeCa(cas, plan.role)).subjectName.getField('CN')[0] ?? roleNames[plan.role];
    const commonName = `${base.replace(/ G\d+$/, '')} G${generation}`;
    // New keys go where the role's current key is (a token stays a token).
    const store = await keyStores.forRef(activeCa(cas, plan.role).keyRef ?? deps.initialKeyFiles.root);
    const pending = await store.generate();
    const made = plan.role === 'root' ? await createRootCa({ commonName, clock, keys: pending }) : await createIssuingCa({ issuer: parent, commonName, clock, keys: pending });
    // The key is stored before its row exists: a crash in between leaves an unused key, never a CA without a key.
    const name = `ca-${caIdOf((await describeCertificate(made.certificate)).fingerprint)}`;
    const keyRef = await pending.save(store.kind === 'file' ? name : `fleetgate-${name}`);
    const row = await describeCa(made.certificate, { role: plan.role, issuerId: plan.role === 'root' ? null : plan.parent.id, keyRef, state: 'next' });
    if (plan.role !== 'root') return [row];
    // Each root signed by the other: a device holding either root verifies a server certificate from either.
    const newByOld = await crossCertify({ subject: made.certificate, issuer: parent, clock });
    const oldByNew = await crossCertify({ subject: parent.certificate, issuer: made, clock });
    return [
      row,
      await describeCa(newByOld, { role: 'cross', issuerId: plan.parent.id, crossOf: row.id, keyRef: null, state: 'active' }),
      await describeCa(oldByNew, { role: 'cross', issuerId: row.id, crossOf: plan.parent.id, keyRef: null, state: 'active' }),
    ];
  };

  return {
    list: () => cas,
    reload,
    async issuer(role) {
      // Read again if older than a few seconds: a process that missed trust.changed (a Redis outage) moves
      // to the CA another process activated on its own, instead of signing with one the registry refuses.
      if (clock.now().getTime() - loadedAt > issuerFreshnessMs) await reload();
      const ca = activeCa(cas, role);
      return { id: ca.id, credential: await credential(ca.id), chainPem: chainFor(ca.id) };
    },
    credential,
    chainFor,
    rootsPem: () => trusted('root').map((ca) => ca.pem).join(''),
    trustBundle,
    async rotate(role, stage, actor) {
      await reload();
      const plan = planRotation(cas, role, stage);
      const audit = (caId: string, extra: Record<string, unknown> = {}) => ({ actor, action: `ca.${stage}`, result: 'ok' as const, detail: { role, caId, ...extra } });
      let caId: string;
      if (plan.stage === 'prepare') {
        const added = await makeCa(plan);
        caId = added[0]!.id;
        cas = await registry.changeCertificateAuthorities({
          add: added,
          preparedFrom: { role, parentId: plan.parent.id },
          audit: audit(caId, { parent: plan.parent.id, crossCertificates: added.slice(1).map((ca) => ca.id) }),
        });
      } else if (plan.stage === 'activate') {
        caId = plan.next.id;
        cas = await registry.changeCertificateAuthorities({ transitions: plan.transitions, audit: audit(caId, { previous: plan.previous.id }) });
      } else {
        caId = plan.retiring.id;
        cas = await registry.changeCertificateAuthorities({
          transitions: plan.transitions,
          mustBeUnused: { id: caId, now: clock.now() },
          audit: audit(caId, { crossCertificates: plan.transitions.slice(1).map((transition) => transition.id) }),
        });
      }
      await reload();
      // The server certificate follows the active root, so that once the old root is gone it verifies under the new one.
      if (role === 'root' && stage !== 'prepare') await deps.renewServerCertificate(await credential(activeCa(cas, 'root').id));
      return { role, stage, ca: byId(caId), cas };
    },
  };
}

async function describeCa(
  certificate: x509.X509Certificate,
  options: { role: NewCertificateAuthority['role']; issuerId: string | null; keyRef: string | null; crossOf?: string; state?: NewCertificateAuthority['state'] },
): Promise<NewCertificateAuthority> {
  const described = await describeCertificate(certificate);
  return {
    id: caIdOf(described.fingerprint),
    role: options.role,
    state: options.state ?? 'active',
    fingerprint: described.fingerprint,
    subject: certificate.subject,
    issuerId: options.issuerId,
    crossOf: options.crossOf ?? null,
    pem: described.pem,
    keyRef: options.keyRef,
    notBefore: certificate.notBefore,
    notAfter: certificate.notAfter,
  };
}
