import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  allowedKeyTypes,
  backendPolicy,
  defaultDevicePolicy,
  type ErrorCode,
  FleetgateError,
  type PolicyDocument,
} from '../../core/index.ts';
import type { AuditInput, NewCertificate, NewDevice, Registry } from '../../registry/index.ts';

/**
 * What every registry adapter must do, whatever it stores into. An adapter's test file calls
 * `describeRegistryContract(name, open)`; `open` must return a fresh, empty registry each time (the suite
 * closes it after each test).
 */
export function describeRegistryContract(name: string, open: () => Promise<Registry>): void {
  describe(`registry contract: ${name}`, () => {
    let registry: Registry;

    beforeEach(async () => {
      registry = await open();
    });

    afterEach(async () => {
      await registry.close();
    });

    /** The fixture most tests start from: two policies and a template that uses the first. */
    async function givenBasics(): Promise<void> {
      await registry.putPolicy('default', defaultDevicePolicy, audit('policy.put'));
      await registry.putPolicy('backend', backendPolicy, audit('policy.put'));
      await registry.putTemplate(template('sensors'), audit('template.put'));
    }

    function register(id: string, n: number | string, options: Partial<NewDevice> & { mustBeNew?: boolean; certificate?: Partial<NewCertificate> } = {}) {
      const { mustBeNew = false, certificate: certificateOverrides, ...device } = options;
      return registry.registerCertificate({
        device: { id, kind: 'device', template: 'sensors', ...device },
        certificate: certificate(n, certificateOverrides),
        mustBeNew,
        audit: audit('device.register', { actor: 'provisioning' }),
      });
    }

    /** Everything a refused call could have written: if none of it changed, nothing was written. */
    async function snapshot() {
      const devices = await registry.listDevices({ limit: 1000 });
      return {
        devices,
        certificates: await Promise.all(devices.map(async (device) => registry.listCertificates(device.id))),
        policies: await registry.listPolicies(),
        templates: await registry.listTemplates(),
        audit: await registry.queryAudit({ limit: 1000 }),
      };
    }

    describe('policies', () => {
      it('returns undefined for an unknown policy', async () => {
        expect(await registry.getPolicy('nope')).toBeUndefined();
        expect(await registry.listPolicies()).toEqual([]);
      });

      it('creates a policy at version 1 and bumps the version on every put', async () => {
        const before = Date.now();
        const created = await registry.putPolicy('sensors', documentFor('sensors/#'), audit('policy.put', { detail: { policy: 'sensors' } }));
        expect(created).toEqual({ name: 'sensors', document: documentFor('sensors/#'), version: 1, updatedAt: expect.any(Date) });
        expectRecent(created.updatedAt, before);
        expect(await registry.getPolicy('sensors')).toEqual(created);

        const replaced = await registry.putPolicy('sensors', documentFor('sensors/${device.id}/#'), audit('policy.put'));
        expect(replaced.version).toBe(2);
        expect(replaced.document).toEqual(documentFor('sensors/${device.id}/#'));
        expect((await registry.putPolicy('sensors', documentFor('sensors/${device.id}/#'), audit('policy.put'))).version).toBe(3);
        expect(await registry.getPolicy('sensors')).toMatchObject({ version: 3, document: documentFor('sensors/${device.id}/#') });

        const entries = await registry.queryAudit({ action: 'policy.put' });
        expect(entries).toHaveLength(3);
        expect(entries[2]).toMatchObject({ actor: 'operator', action: 'policy.put', result: 'ok', detail: { policy: 'sensors' } });
      });

      it('lists policies by name', async () => {
        await registry.putPolicy('zeta', documentFor('z/#'), audit('policy.put'));
        await registry.putPolicy('alpha', documentFor('a/#'), audit('policy.put'));
        expect((await registry.listPolicies()).map((policy) => policy.name)).toEqual(['alpha', 'zeta']);
      });

      it('refuses an invalid document with POLICY_INVALID and writes nothing', async () => {
        await givenBasics();
        const before = await snapshot();
        const invalid = { statements: [{ effect: 'allow', actions: ['publish'], topics: ['a/#/b'] }] } as PolicyDocument;
        await expectRefusal(registry.putPolicy('default', invalid, audit('policy.put')), 'POLICY_INVALID');
        await expectRefusal(registry.putPolicy('fresh', { statements: [] }, audit('policy.put')), 'POLICY_INVALID');
        expect(await snapshot()).toEqual(before);
      });
    });

    describe('templates', () => {
      it('creates a template and replaces it, keeping createdAt', async () => {
        await givenBasics();
        const created = await registry.getTemplate('sensors');
        expect(created).toEqual({
          name: 'sensors',
          policy: 'default',
          validityDays: 365,
          keyTypes: ['EC P-256', 'EC P-384'],
          requireAllowlist: false,
          allowReenroll: false,
          limits: {},
          renewAfterExpiryDays: 0,
          createdAt: expect.any(Date),
          updatedAt: expect.any(Date),
        });

        const replaced = await registry.putTemplate(
          { name: 'sensors', policy: 'backend', validityDays: 30, keyTypes: [...allowedKeyTypes], requireAllowlist: true, allowReenroll: true, limits: { publishPerSecond: 5 }, renewAfterExpiryDays: 90 },
          audit('template.put'),
        );
        expect(replaced).toMatchObject({ policy: 'backend', validityDays: 30, keyTypes: [...allowedKeyTypes], requireAllowlist: true, allowReenroll: true, limits: { publishPerSecond: 5 }, renewAfterExpiryDays: 90 });
        expect(replaced.createdAt).toEqual(created?.createdAt);
        expect(replaced.updatedAt.getTime()).toBeGreaterThanOrEqual(created?.updatedAt.getTime() ?? Infinity);
        expect(await registry.getTemplate('sensors')).toEqual(replaced);
        expect(await registry.queryAudit({ action: 'template.put' })).toHaveLength(2);
      });

      it('lists templates by name and returns undefined for an unknown one', async () => {
        await givenBasics();
        await registry.putTemplate(template('actuators'), audit('template.put'));
        expect((await registry.listTemplates()).map((t) => t.name)).toEqual(['actuators', 'sensors']);
        expect(await registry.getTemplate('nope')).toBeUndefined();
      });

      it('refuses a template whose policy does not exist with POLICY_NOT_FOUND and writes nothing', async () => {
        await givenBasics();
        const before = await snapshot();
        await expectRefusal(registry.putTemplate({ ...template('lamps'), policy: 'missing' }, audit('template.put')), 'POLICY_NOT_FOUND');
        await expectRefusal(registry.putTemplate({ ...template('sensors'), policy: 'missing' }, audit('template.put')), 'POLICY_NOT_FOUND');
        expect(await snapshot()).toEqual(before);
      });

      it('refuses impossible validity or key types with TEMPLATE_INVALID', async () => {
        await givenBasics();
        const before = await snapshot();
        await expectRefusal(registry.putTemplate({ ...template('lamps'), validityDays: 0 }, audit('template.put')), 'TEMPLATE_INVALID');
        await expectRefusal(registry.putTemplate({ ...template('lamps'), validityDays: 1.5 }, audit('template.put')), 'TEMPLATE_INVALID');
        await expectRefusal(registry.putTemplate({ ...template('lamps'), keyTypes: [] }, audit('template.put')), 'TEMPLATE_INVALID');
        await expectRefusal(registry.putTemplate({ ...template('lamps'), keyTypes: ['DSA 1024'] }, audit('template.put')), 'TEMPLATE_INVALID');
        for (const renewAfterExpiryDays of [-1, 3651, 2.5]) {
          await expectRefusal(registry.putTemplate({ ...template('lamps'), renewAfterExpiryDays }, audit('template.put')), 'TEMPLATE_INVALID');
        }
        expect(await snapshot()).toEqual(before);
      });
    });

    describe('devices and certificates', () => {
      it('registers a new device, its certificate and the audit entry together', async () => {
        await givenBasics();
        const before = Date.now();
        const issued = await register('sensor-1', 1, { attributes: { site: 'lyon', line: '4' }, mustBeNew: true });

        expect(issued).toEqual({
          ...certificate(1),
          deviceId: 'sensor-1',
          status: 'active',
          issuedAt: expect.any(Date),
          revokedAt: null,
          revocationReason: null,
          replaces: null,
          issuerCa: null,
        });
        expectRecent(issued.issuedAt, before);
        const device = await registry.getDevice('sensor-1');
        expect(device).toEqual({
          id: 'sensor-1',
          kind: 'device',
          status: 'active',
          template: 'sensors',
          policy: null,
          attributes: { site: 'lyon', line: '4' },
          reportedAttributes: {},
          statusReason: null,
          createdAt: issued.issuedAt,
          updatedAt: issued.issuedAt,
        });
        expect(await registry.getCertificate(issued.serial)).toEqual(issued);
        expect(await registry.listCertificates('sensor-1')).toEqual([issued]);
        expect(await registry.findCertificatesByPublicKey(issued.publicKeyHash)).toEqual([issued]);

        const [entry] = await registry.queryAudit({ deviceId: 'sensor-1' });
        expect(entry).toMatchObject({ actor: 'provisioning', action: 'device.register', result: 'ok', deviceId: 'sensor-1' });
      });

      it('keeps every time to the millisecond', async () => {
        await givenBasics();
        const notBefore = new Date('2025-03-04T05:06:07.089Z');
        const notAfter = new Date('2026-03-04T05:06:07.999Z');
        await register('sensor-1', 1, { certificate: { notBefore, notAfter } });
        const stored = await registry.getCertificate(certificate(1).serial);
        expect(stored?.notBefore.toISOString()).toBe(notBefore.toISOString());
        expect(stored?.notAfter.toISOString()).toBe(notAfter.toISOString());
      });

      it('registers services with a policy override', async () => {
        await givenBasics();
        await register('billing', 1, { kind: 'service', policy: 'backend' });
        expect(await registry.getDevice('billing')).toMatchObject({ kind: 'service', policy: 'backend', attributes: {} });
      });

      it('adds certificates to a known device without changing the device', async () => {
        await givenBasics();
        await register('sensor-1', 1, { attributes: { site: 'lyon' } });
        const device = await registry.getDevice('sensor-1');
        // The device part of the input only matters for a new device; even an unknown template is not looked at.
        const second = await register('sensor-1', 2, { template: 'other', attributes: { site: 'paris' } });

        expect(second.status).toBe('active');
        expect(await registry.getDevice('sensor-1')).toEqual(device);
        expect((await registry.listCertificates('sensor-1')).map((c) => c.serial)).toEqual([certificate(1).serial, certificate(2).serial]);
      });

      it('lets a device present its own public key again', async () => {
        await givenBasics();
        await register('sensor-1', 1);
        await register('sensor-1', 2, { certificate: { publicKeyHash: certificate(1).publicKeyHash } });
        expect(await registry.findCertificatesByPublicKey(certificate(1).publicKeyHash)).toHaveLength(2);
      });

      it('refuses a public key bound to another device with PKI_PUBLIC_KEY_IN_USE, leaving no device, certificate or audit entry', async () => {
        await givenBasics();
        await register('sensor-1', 1);
        const before = await snapshot();

        const reuse = { certificate: { publicKeyHash: certificate(1).publicKeyHash } };
        await expectRefusal(register('sensor-2', 2, { ...reuse, mustBeNew: true }), 'PKI_PUBLIC_KEY_IN_USE');
        expect(await registry.getDevice('sensor-2')).toBeUndefined();
        expect(await registry.getCertificate(certificate(2).serial)).toBeUndefined();
        expect(await registry.queryAudit({ deviceId: 'sensor-2' })).toEqual([]);
        expect(await snapshot()).toEqual(before);

        // Also when the other device already exists, and when the key's device has been revoked.
        await register('sensor-3', 3);
        await registry.setDeviceStatus({ id: 'sensor-1', status: 'revoked', reason: 'keyCompromise', audit: audit('device.revoke') });
        const later = await snapshot();
        await expectRefusal(register('sensor-3', 4, reuse), 'PKI_PUBLIC_KEY_IN_USE');
        expect(await snapshot()).toEqual(later);
      });

      it('refuses a taken id with DEVICE_EXISTS when mustBeNew, and writes nothing', async () => {
        await givenBasics();
        await register('sensor-1', 1);
        const before = await snapshot();
        await expectRefusal(register('sensor-1', 2, { mustBeNew: true }), 'DEVICE_EXISTS');
        expect(await snapshot()).toEqual(before);
      });

      it('refuses a new device with an unknown template (TEMPLATE_NOT_FOUND) or policy (POLICY_NOT_FOUND), and writes nothing', async () => {
        await givenBasics();
        const before = await snapshot();
        await expectRefusal(register('sensor-1', 1, { template: 'missing' }), 'TEMPLATE_NOT_FOUND');
        await expectRefusal(register('sensor-1', 1, { policy: 'missing' }), 'POLICY_NOT_FOUND');
        expect(await snapshot()).toEqual(before);
      });

      it('refuses ids that could not be a single topic level with DEVICE_ID_INVALID', async () => {
        await givenBasics();
        for (const id of ['', 'a/b', 'dev+', 'dev#', 'with space', '-leading']) {
          await expectRefusal(register(id, 1), 'DEVICE_ID_INVALID');
        }
        await expectRefusal(register('sensor-1', 1, { attributes: { site: 'a/b' } }), 'ATTRIBUTE_INVALID');
        expect(await registry.listDevices()).toEqual([]);
      });

      it('rolls back a write that fails after it started: a duplicate serial leaves no device', async () => {
        await givenBasics();
        await register('sensor-1', 1);
        const before = await snapshot();
        // Passes every check, then collides on the certificate's primary key after the device row was written.
        await expect(register('sensor-2', 2, { certificate: { serial: certificate(1).serial } })).rejects.toThrow();
        expect(await snapshot()).toEqual(before);
      });

      it('records one renewal after expiry of a certificate: a second is refused with RENEW_EXPIRED_ALREADY_RENEWED and writes nothing', async () => {
        await givenBasics();
        const expired = await register('sensor-1', 1);
        const renewal = (n: number, onlySuccessor: boolean) =>
          registry.registerCertificate({ device: { id: 'sensor-1', kind: 'device', template: 'sensors' }, certificate: certificate(n, { replaces: expired.serial }), mustBeNew: false, onlySuccessor, audit: audit('device.renew') });
        expect(await renewal(2, true)).toMatchObject({ replaces: expired.serial, status: 'active' });
        const before = await snapshot();
        await expectRefusal(renewal(3, true), 'RENEW_EXPIRED_ALREADY_RENEWED');
        expect(await snapshot()).toEqual(before);
        // An ordinary renewal may be asked for again with another key; the use-case decides when it may.
        expect(await renewal(4, false)).toMatchObject({ replaces: expired.serial });
      });

      it('returns undefined or empty lists for unknown devices and certificates', async () => {
        expect(await registry.getDevice('ghost')).toBeUndefined();
        expect(await registry.getCertificate('00')).toBeUndefined();
        expect(await registry.listCertificates('ghost')).toEqual([]);
        expect(await registry.findCertificatesByPublicKey('nope')).toEqual([]);
      });

      it('lists devices by id with status, kind, template, prefix and keyset filters', async () => {
        await givenBasics();
        await registry.putTemplate(template('lamps'), audit('template.put'));
        await register('sensor-b', 1);
        await register('sensor-a', 2);
        await register('lamp-1', 3, { template: 'lamps' });
        await register('sensor_c', 4);
        await register('SENSOR-x', 5);
        await register('svc', 6, { kind: 'service', policy: 'backend' });
        await registry.setDeviceStatus({ id: 'sensor-b', status: 'suspended', reason: 'maintenance', audit: audit('device.suspend') });

        const ids = async (query?: Parameters<Registry['listDevices']>[0]) => (await registry.listDevices(query)).map((d) => d.id);
        expect(await ids()).toEqual(['SENSOR-x', 'lamp-1', 'sensor-a', 'sensor-b', 'sensor_c', 'svc']);
        expect(await ids({ status: 'suspended' })).toEqual(['sensor-b']);
        expect(await ids({ kind: 'service' })).toEqual(['svc']);
        expect(await ids({ template: 'lamps' })).toEqual(['lamp-1']);
        // Case-sensitive, and "_" is a character, not a wildcard.
        expect(await ids({ prefix: 'sensor-' })).toEqual(['sensor-a', 'sensor-b']);
        expect(await ids({ prefix: 'sensor_' })).toEqual(['sensor_c']);
        expect(await ids({ prefix: 'sensor-a' })).toEqual(['sensor-a']);
        expect(await ids({ prefix: 'nothing' })).toEqual([]);
        expect(await ids({ prefix: 'sensor', status: 'active' })).toEqual(['sensor-a', 'sensor_c']);
        expect(await ids({ after: 'sensor-a', limit: 2 })).toEqual(['sensor-b', 'sensor_c']);
        expect(await ids({ after: 'sensor_c' })).toEqual(['svc']);
      });

      it('pages devices 100 at a time by default', async () => {
        await givenBasics();
        for (let n = 0; n < 101; n += 1) await register(`dev-${String(n).padStart(3, '0')}`, n);
        const page = await registry.listDevices();
        expect(page).toHaveLength(100);
        expect(page.at(-1)?.id).toBe('dev-099');
        expect((await registry.listDevices({ after: 'dev-099' })).map((d) => d.id)).toEqual(['dev-100']);
        expect(await registry.listDevices({ limit: 5000 })).toHaveLength(101);
        expect(await registry.listDevices({ limit: 3 })).toHaveLength(3);
      });
    });

    describe('device status', () => {
      it('refuses an unknown id with DEVICE_NOT_FOUND and writes nothing', async () => {
        await givenBasics();
        const before = await snapshot();
        await expectRefusal(registry.setDeviceStatus({ id: 'ghost', status: 'suspended', reason: null, audit: audit('device.suspend') }), 'DEVICE_NOT_FOUND');
        expect(await snapshot()).toEqual(before);
      });

      it('suspends and resumes with the reason and audit entry, leaving certificates alone', async () => {
        await givenBasics();
        const issued = await register('sensor-1', 1);

        const suspended = await registry.setDeviceStatus({ id: 'sensor-1', status: 'suspended', reason: 'maintenance', audit: audit('device.suspend') });
        expect(suspended).toMatchObject({ id: 'sensor-1', status: 'suspended', statusReason: 'maintenance' });
        expect(suspended.updatedAt.getTime()).toBeGreaterThanOrEqual(suspended.createdAt.getTime());
        expect(await registry.getDevice('sensor-1')).toEqual(suspended);
        expect(await registry.getCertificate(issued.serial)).toEqual(issued);

        const resumed = await registry.setDeviceStatus({ id: 'sensor-1', status: 'active', reason: null, audit: audit('device.resume') });
        expect(resumed).toMatchObject({ status: 'active', statusReason: null });
        expect((await registry.queryAudit({ deviceId: 'sensor-1' })).map((e) => e.action)).toEqual(['device.resume', 'device.suspend', 'device.register']);
      });

      it('revoking a device revokes every certificate that is not revoked yet', async () => {
        await givenBasics();
        await register('sensor-1', 1);
        await register('sensor-1', 2);
        await register('sensor-2', 3);
        const before = Date.now();

        const revoked = await registry.setDeviceStatus({ id: 'sensor-1', status: 'revoked', reason: 'keyCompromise', audit: audit('device.revoke') });
        expect(revoked).toMatchObject({ status: 'revoked', statusReason: 'keyCompromise' });
        const certificates = await registry.listCertificates('sensor-1');
        expect(certificates).toHaveLength(2);
        for (const revokedCertificate of certificates) {
          expect(revokedCertificate).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise' });
          expectRecent(revokedCertificate.revokedAt, before);
        }
        // Another device's certificates are untouched.
        expect(await registry.getCertificate(certificate(3).serial)).toMatchObject({ status: 'active', revokedAt: null });
        expect((await registry.queryAudit({ deviceId: 'sensor-1' }))[0]).toMatchObject({ action: 'device.revoke', result: 'ok' });
      });

      it("records the revocation reason 'unspecified' when none is given", async () => {
        await givenBasics();
        await register('sensor-1', 1);
        await registry.setDeviceStatus({ id: 'sensor-1', status: 'revoked', reason: null, audit: audit('device.revoke') });
        expect(await registry.getCertificate(certificate(1).serial)).toMatchObject({ status: 'revoked', revocationReason: 'unspecified' });
        expect(await registry.getDevice('sensor-1')).toMatchObject({ status: 'revoked', statusReason: null });
      });

      it('lists what a CRL carries: revoked certificates, and the certificates of suspended devices as holds until resumed', async () => {
        await givenBasics();
        await register('sensor-1', 1);
        await register('sensor-2', 2);
        await register('sensor-3', 3);
        await register('sensor-4', 4, { certificate: { notAfter: new Date('2025-03-01T00:00:00.000Z') } });
        const during = new Date('2025-06-01T00:00:00.000Z'); // sensor-4's certificate has expired by then
        const suspended = await registry.setDeviceStatus({ id: 'sensor-1', status: 'suspended', reason: 'maintenance', audit: audit('device.suspend') });
        await registry.setDeviceStatus({ id: 'sensor-4', status: 'suspended', reason: null, audit: audit('device.suspend') });
        await registry.setDeviceStatus({ id: 'sensor-2', status: 'revoked', reason: 'keyCompromise', audit: audit('device.revoke') });
        const revokedAt = (await registry.getCertificate(certificate(2).serial))?.revokedAt;

        expect(await registry.listRevokedCertificates(during)).toEqual([
          { serial: certificate(1).serial, revokedAt: suspended.updatedAt, reason: 'certificateHold', issuerCa: null },
          { serial: certificate(2).serial, revokedAt, reason: 'keyCompromise', issuerCa: null },
        ]);
        await registry.setDeviceStatus({ id: 'sensor-1', status: 'active', reason: null, audit: audit('device.resume') });
        expect(await registry.listRevokedCertificates(during)).toEqual([{ serial: certificate(2).serial, revokedAt, reason: 'keyCompromise', issuerCa: null }]);
      });

      it('treats revoked as final: no resume, no suspend, no new certificate; revoking again changes nothing', async () => {
        await givenBasics();
        await register('sensor-1', 1);
        const revoked = await registry.setDeviceStatus({ id: 'sensor-1', status: 'revoked', reason: 'keyCompromise', audit: audit('device.revoke') });
        const [revokedCertificate] = await registry.listCertificates('sensor-1');
        const before = await snapshot();

        await expectRefusal(registry.setDeviceStatus({ id: 'sensor-1', status: 'active', reason: null, audit: audit('device.resume') }), 'AUTH_DEVICE_REVOKED');
        await expectRefusal(registry.setDeviceStatus({ id: 'sensor-1', status: 'suspended', reason: null, audit: audit('device.suspend') }), 'AUTH_DEVICE_REVOKED');
        await expectRefusal(register('sensor-1', 2), 'AUTH_DEVICE_REVOKED');
        expect(await snapshot()).toEqual(before);

        const again = await registry.setDeviceStatus({ id: 'sensor-1', status: 'revoked', reason: 'superseded', audit: audit('device.revoke') });
        expect(again).toEqual(revoked);
        expect(await registry.listCertificates('sensor-1')).toEqual([revokedCertificate]);
        expect(await registry.queryAudit({ deviceId: 'sensor-1', action: 'device.revoke' })).toHaveLength(2);
      });
    });

    describe('admission', () => {
      it('returns undefined for an unknown serial', async () => {
        expect(await registry.getAdmission('deadbeef')).toBeUndefined();
      });

      it("reads the certificate, the device and the template's policy in one call", async () => {
        await givenBasics();
        const issued = await register('sensor-1', 1, { attributes: { site: 'lyon' } });
        const admission = await registry.getAdmission(issued.serial);
        expect(admission).toEqual({
          certificate: issued,
          device: await registry.getDevice('sensor-1'),
          policy: await registry.getPolicy('default'),
          limits: {},
          issuerRetired: false,
        });
      });

      it("carries the template's traffic limits, which the broker enforces per session", async () => {
        await givenBasics();
        await registry.putTemplate({ ...template('sensors'), limits: { publishPerSecond: 5, outboundQueueBytes: 65536 } }, audit('template.put'));
        const issued = await register('sensor-1', 1);
        expect((await registry.getAdmission(issued.serial))?.limits).toEqual({ publishPerSecond: 5, outboundQueueBytes: 65536 });
      });

      it("uses the device's policy override instead of the template's", async () => {
        await givenBasics();
        const issued = await register('billing', 1, { kind: 'service', policy: 'backend' });
        expect((await registry.getAdmission(issued.serial))?.policy).toEqual(await registry.getPolicy('backend'));
      });

      it('sees policy changes, template changes and revocation at once', async () => {
        await givenBasics();
        const issued = await register('sensor-1', 1);
        await registry.putPolicy('default', documentFor('devices/${device.id}/telemetry'), audit('policy.put'));
        expect((await registry.getAdmission(issued.serial))?.policy).toMatchObject({ name: 'default', version: 2, document: documentFor('devices/${device.id}/telemetry') });

        await registry.putTemplate({ ...template('sensors'), policy: 'backend' }, audit('template.put'));
        expect((await registry.getAdmission(issued.serial))?.policy?.name).toBe('backend');

        await registry.setDeviceStatus({ id: 'sensor-1', status: 'revoked', reason: 'keyCompromise', audit: audit('device.revoke') });
        const admission = await registry.getAdmission(issued.serial);
        expect(admission?.device.status).toBe('revoked');
        expect(admission?.certificate).toMatchObject({ status: 'revoked', revocationReason: 'keyCompromise' });
      });
    });

    describe('claims', () => {
      it('creates a claim and finds it by id and by certificate serial', async () => {
        await givenBasics();
        const expiresAt = new Date('2030-01-01T00:00:00.000Z');
        const before = Date.now();
        const claim = await registry.createClaim(
          { id: 'batch-7', template: 'sensors', certificateSerial: '7f01', maxUses: 500, expiresAt },
          audit('claim.create', { detail: { claim: 'batch-7' } }),
        );
        expect(claim).toEqual({
          id: 'batch-7',
          template: 'sensors',
          certificateSerial: '7f01',
          maxUses: 500,
          uses: 0,
          expiresAt,
          status: 'active',
          createdAt: expect.any(Date),
          issuerPem: null,
          issuerCa: null,
        });
        expectRecent(claim.createdAt, before);
        expect(await registry.getClaim('batch-7')).toEqual(claim);
        expect(await registry.getClaimByCertificateSerial('7f01')).toEqual(claim);
        expect(await registry.queryAudit({ action: 'claim.create' })).toMatchObject([{ result: 'ok', detail: { claim: 'batch-7' } }]);

        const unlimited = await registry.createClaim({ id: 'lab', template: 'sensors', certificateSerial: '7f02', maxUses: null, expiresAt }, audit('claim.create'));
        expect(unlimited.maxUses).toBeNull();
      });

      it('returns undefined for unknown claims', async () => {
        expect(await registry.getClaim('nope')).toBeUndefined();
        expect(await registry.getClaimByCertificateSerial('00')).toBeUndefined();
      });

      it('refuses a claim for an unknown template with TEMPLATE_NOT_FOUND and writes nothing', async () => {
        await givenBasics();
        const before = await snapshot();
        await expectRefusal(
          registry.createClaim({ id: 'batch-8', template: 'missing', certificateSerial: '7f03', maxUses: 1, expiresAt: new Date('2030-01-01T00:00:00Z') }, audit('claim.create')),
          'TEMPLATE_NOT_FOUND',
        );
        expect(await registry.getClaim('batch-8')).toBeUndefined();
        expect(await snapshot()).toEqual(before);
      });
    });

    describe('claim enrollment', () => {
      const expiresAt = new Date('2030-01-01T00:00:00.000Z');

      /** Template t1 re-enrollable, a claim for it, a device of t1 and a service (default template sensors). */
      async function givenClaim(options: { maxUses?: number | null } = {}): Promise<void> {
        await givenBasics();
        await registry.putTemplate({ ...template('t1'), allowReenroll: true }, audit('template.put'));
        await registry.putTemplate({ ...template('t2'), allowReenroll: true }, audit('template.put'));
        await registry.createClaim({ id: 'c1', template: 't1', certificateSerial: '7c01', maxUses: options.maxUses === undefined ? 10 : options.maxUses, expiresAt }, audit('claim.create'));
      }

      function enroll(id: string, n: number | string, options: { reportedAttributes?: Record<string, string>; allowReenroll?: boolean; requireAllowlist?: boolean } = {}) {
        return registry.enrollWithClaim({
          claimId: 'c1',
          device: { id, kind: 'device', template: 't1', ...(options.reportedAttributes ? { reportedAttributes: options.reportedAttributes } : {}) },
          certificate: certificate(n),
          requireAllowlist: options.requireAllowlist ?? false,
          allowReenroll: options.allowReenroll ?? true,
          audit: audit('device.enroll', { actor: 'claim:c1' }),
        });
      }

      it('creates a device of the claim template, keeps reported attributes apart and uses the claim once', async () => {
        await givenClaim();
        const { certificate: issued, repeated } = await enroll('sn-1', 1, { reportedAttributes: { tenant: 'victim' } });
        expect(repeated).toBe(false);
        expect(issued).toMatchObject({ deviceId: 'sn-1', status: 'active' });
        expect(await registry.getDevice('sn-1')).toMatchObject({ kind: 'device', template: 't1', attributes: {}, reportedAttributes: { tenant: 'victim' } });
        expect((await registry.getClaim('c1'))?.uses).toBe(1);
        expect(await registry.queryAudit({ deviceId: 'sn-1', action: 'device.enroll' })).toMatchObject([{ result: 'ok', detail: { reenrolled: false } }]);
      });

      it('records which claim enrolled a device last: by the enrollment and a re-enrollment, not by a repeat or an operator', async () => {
        await givenClaim();
        await registry.createClaim({ id: 'c2', template: 't1', certificateSerial: '7c02', maxUses: null, expiresAt }, audit('claim.create'));
        await enroll('sn-1', 1);
        expect(await registry.getEnrollingClaim('sn-1')).toBe('c1');
        await registry.enrollWithClaim({ claimId: 'c2', device: { id: 'sn-1', kind: 'device', template: 't1' }, certificate: certificate(2), requireAllowlist: false, allowReenroll: true, audit: audit('device.enroll') });
        expect(await registry.getEnrollingClaim('sn-1')).toBe('c2');
        // The same key again through c1 is a repeat: nothing is written.
        await registry.enrollWithClaim({ claimId: 'c1', device: { id: 'sn-1', kind: 'device', template: 't1' }, certificate: certificate(2), requireAllowlist: false, allowReenroll: true, audit: audit('device.enroll') });
        expect(await registry.getEnrollingClaim('sn-1')).toBe('c2');
        await register('op-1', 3);
        expect(await registry.getEnrollingClaim('op-1')).toBeUndefined();
        expect(await registry.getEnrollingClaim('ghost')).toBeUndefined();
      });

      it("gives a new device the trusted attributes of its allow-list row; a re-import with attributes replaces them", async () => {
        await givenClaim();
        expect(await registry.importAllowlist('t1', ['sn-1', { serial: 'sn-2', attributes: { tenant: 'acme' } }, { serial: 'sn-3' }], audit('allowlist.import'))).toEqual({ added: 3, total: 3 });
        // Attributes widen policies: the audit trail says how many entries set some.
        expect((await registry.queryAudit({ action: 'allowlist.import' }))[0]).toMatchObject({ detail: { template: 't1', added: 3, total: 3, withAttributes: 1 } });
        expect(await registry.importAllowlist('t1', [{ serial: 'sn-2', attributes: { tenant: 'globex', site: 'x' } }, 'sn-3', 'sn-4'], audit('allowlist.import'))).toEqual({ added: 1, total: 4 });
        // A serial listed without attributes keeps the ones it has.
        await registry.importAllowlist('t1', ['sn-2'], audit('allowlist.import'));

        await enroll('sn-2', 2, { reportedAttributes: { tenant: 'victim' }, requireAllowlist: true });
        expect(await registry.getDevice('sn-2')).toMatchObject({ attributes: { tenant: 'globex', site: 'x' }, reportedAttributes: { tenant: 'victim' } });
        await enroll('sn-1', 1, { requireAllowlist: true });
        expect(await registry.getDevice('sn-1')).toMatchObject({ attributes: {}, reportedAttributes: {} });
        // Another template's row does not apply.
        await registry.importAllowlist('t2', [{ serial: 'sn-9', attributes: { tenant: 'acme' } }], audit('allowlist.import'));
        await enroll('sn-9', 9);
        expect(await registry.getDevice('sn-9')).toMatchObject({ attributes: {} });
      });

      it('refuses a bad allow-list entry, importing none of the list', async () => {
        await givenClaim();
        const before = await snapshot();
        await expectRefusal(registry.importAllowlist('t1', ['sn-1', { serial: 'sn-2', attributes: { tenant: 'a/#' } }], audit('allowlist.import')), 'ATTRIBUTE_INVALID');
        await expectRefusal(registry.importAllowlist('t1', ['sn-1', { serial: 'a/b' }], audit('allowlist.import')), 'DEVICE_ID_INVALID');
        expect(await registry.isSerialAllowed('t1', 'sn-1')).toBe(false);
        expect(await snapshot()).toEqual(before);
      });

      it('re-enrolls an active device of its template: old certificates superseded, reported attributes replaced, trusted ones kept', async () => {
        await givenClaim();
        await registry.importAllowlist('t1', [{ serial: 'sn-1', attributes: { tenant: 'acme' } }], audit('allowlist.import'));
        const first = await enroll('sn-1', 1, { reportedAttributes: { fw: '1.0' } });
        const second = await enroll('sn-1', 2, { reportedAttributes: { fw: '2.0' } });
        expect(second.repeated).toBe(false);
        expect(await registry.getCertificate(first.certificate.serial)).toMatchObject({ status: 'superseded' });
        expect(await registry.getDevice('sn-1')).toMatchObject({ attributes: { tenant: 'acme' }, reportedAttributes: { fw: '2.0' } });
        expect((await registry.getClaim('c1'))?.uses).toBe(2);
        expect((await registry.queryAudit({ deviceId: 'sn-1', action: 'device.enroll' }))[0]).toMatchObject({ detail: { reenrolled: true } });
      });

      it('answers the same key again with the certificate it has, writing nothing, even on an exhausted claim', async () => {
        await givenClaim({ maxUses: 1 });
        const first = await enroll('sn-1', 1);
        const before = await snapshot();
        const again = await registry.enrollWithClaim({
          claimId: 'c1',
          device: { id: 'sn-1', kind: 'device', template: 't1', reportedAttributes: { fw: 'other' } },
          certificate: { ...certificate('again'), publicKeyHash: first.certificate.publicKeyHash },
          requireAllowlist: false,
          allowReenroll: false,
          audit: audit('device.enroll'),
        });
        expect(again).toEqual({ certificate: first.certificate, repeated: true });
        expect(await snapshot()).toEqual(before);
        expect((await registry.getClaim('c1'))?.uses).toBe(1);
      });

      it.each([
        ['a service', async () => register('svc-1', 'svc', { kind: 'service', policy: 'backend' }), 'svc-1', 'ENROLL_IDENTITY_NOT_REENROLLABLE'],
        ['a device of another template', async () => register('dev-t2', 'dev', { template: 't2' }), 'dev-t2', 'ENROLL_IDENTITY_NOT_REENROLLABLE'],
        [
          'a suspended device',
          async () => {
            await enroll('dev-s', 'dev');
            await registry.setDeviceStatus({ id: 'dev-s', status: 'suspended', reason: 'maintenance', audit: audit('device.suspend') });
          },
          'dev-s',
          'AUTH_DEVICE_SUSPENDED',
        ],
        [
          'a revoked device',
          async () => {
            await enroll('dev-r', 'dev');
            await registry.setDeviceStatus({ id: 'dev-r', status: 'revoked', reason: 'keyCompromise', audit: audit('device.revoke') });
          },
          'dev-r',
          'AUTH_DEVICE_REVOKED',
        ],
      ] as const)('never re-keys %s, not even for its own key, and writes nothing', async (_name, given, id, code) => {
        await givenClaim();
        await given();
        const before = await snapshot();
        const claimBefore = await registry.getClaim('c1');
        await expectRefusal(enroll(id, 'new-key'), code);
        // The identity's own key: a retry must not hand its certificate to a claim that may not enroll it.
        const own = (await registry.listCertificates(id))[0];
        await expectRefusal(
          registry.enrollWithClaim({
            claimId: 'c1',
            device: { id, kind: 'device', template: 't1' },
            certificate: { ...certificate('own-key'), publicKeyHash: own?.publicKeyHash ?? '' },
            requireAllowlist: false,
            allowReenroll: true,
            audit: audit('device.enroll'),
          }),
          code,
        );
        expect(await snapshot()).toEqual(before);
        expect(await registry.getClaim('c1')).toEqual(claimBefore);
      });

      it('refuses an unknown, revoked, expired or exhausted claim, and another key when the template does not allow re-enrollment', async () => {
        await givenClaim({ maxUses: 1 });
        await enroll('sn-1', 1);
        await expectRefusal(enroll('sn-1', 2, { allowReenroll: false }), 'ENROLL_CLONE_SUSPECTED');
        await expectRefusal(enroll('sn-2', 2), 'ENROLL_CLAIM_EXHAUSTED');
        await expectRefusal(enroll('sn-2', 2, { requireAllowlist: true }), 'ENROLL_CLAIM_EXHAUSTED');
        await registry.revokeClaim('c1', audit('claim.revoke'));
        await expectRefusal(enroll('sn-3', 3), 'ENROLL_CLAIM_REVOKED');
        await expectRefusal(registry.enrollWithClaim({ claimId: 'nope', device: { id: 'sn-4', kind: 'device', template: 't1' }, certificate: certificate(4), requireAllowlist: false, allowReenroll: true, audit: audit('device.enroll') }), 'ENROLL_CLAIM_UNKNOWN');
        await registry.createClaim({ id: 'old', template: 't1', certificateSerial: '7c02', maxUses: null, expiresAt: new Date('2001-01-01T00:00:00Z') }, audit('claim.create'));
        await expectRefusal(registry.enrollWithClaim({ claimId: 'old', device: { id: 'sn-5', kind: 'device', template: 't1' }, certificate: certificate(5), requireAllowlist: false, allowReenroll: true, audit: audit('device.enroll') }), 'ENROLL_CLAIM_EXPIRED');
        expect(await registry.getDevice('sn-2')).toBeUndefined();
      });
    });

    describe('audit log', () => {
      it('appends entries with increasing ids, defaulting `at` to now and keeping optional fields', async () => {
        const before = Date.now();
        const first = await registry.appendAudit({ actor: 'broker', action: 'mqtt.connect', result: 'refused', code: 'AUTH_CERT_REVOKED', deviceId: 'sensor-1', detail: { reason: 'certificate revoked', nested: { n: 1 } } });
        const at = new Date('2024-06-01T12:00:00.123Z');
        const second = await registry.appendAudit({ actor: 'cli', action: 'device.list', result: 'ok', at });

        expect(second.id).toBeGreaterThan(first.id);
        expectRecent(first.at, before);
        expect(second.at).toEqual(at);
        expect(first).toEqual({ id: first.id, at: first.at, actor: 'broker', action: 'mqtt.connect', result: 'refused', code: 'AUTH_CERT_REVOKED', deviceId: 'sensor-1', detail: { reason: 'certificate revoked', nested: { n: 1 } } });
        expect(await registry.queryAudit()).toEqual([second, first]);
      });

      it('returns the newest first, or in order after a given id for following the log', async () => {
        const entries = [];
        for (let n = 0; n < 5; n += 1) entries.push(await registry.appendAudit(audit(`step.${n}`)));
        const ids = entries.map((entry) => entry.id);

        expect((await registry.queryAudit()).map((e) => e.id)).toEqual([...ids].reverse());
        expect((await registry.queryAudit({ limit: 2 })).map((e) => e.id)).toEqual([ids[4], ids[3]]);
        expect((await registry.queryAudit({ afterId: ids[1] })).map((e) => e.id)).toEqual(ids.slice(2));
        expect((await registry.queryAudit({ afterId: ids[1], limit: 2 })).map((e) => e.id)).toEqual(ids.slice(2, 4));
        expect((await registry.queryAudit({ afterId: 0 })).map((e) => e.id)).toEqual(ids);
        expect(await registry.queryAudit({ afterId: ids[4] })).toEqual([]);
      });

      it('orders by id even when callers supply earlier times', async () => {
        const late = await registry.appendAudit(audit('late', { at: new Date('2030-01-01T00:00:00Z') }));
        const early = await registry.appendAudit(audit('early', { at: new Date('2020-01-01T00:00:00Z') }));
        expect((await registry.queryAudit()).map((e) => e.id)).toEqual([early.id, late.id]);
      });

      it('filters by device, actor, action, result and the half-open time window [since, until)', async () => {
        const at = (minute: number) => new Date(Date.UTC(2025, 0, 1, 0, minute));
        await registry.appendAudit({ actor: 'broker', action: 'mqtt.connect', result: 'ok', deviceId: 'a', at: at(0) });
        await registry.appendAudit({ actor: 'broker', action: 'mqtt.connect', result: 'refused', code: 'AUTH_DEVICE_SUSPENDED', deviceId: 'b', at: at(1) });
        await registry.appendAudit({ actor: 'operator', action: 'device.suspend', result: 'ok', deviceId: 'b', at: at(2) });
        await registry.appendAudit({ actor: 'operator', action: 'policy.put', result: 'ok', at: at(3) });

        const actions = async (query: Parameters<Registry['queryAudit']>[0]) => (await registry.queryAudit(query)).map((e) => `${e.action}@${e.at.getUTCMinutes()}`);
        expect(await actions({ deviceId: 'b' })).toEqual(['device.suspend@2', 'mqtt.connect@1']);
        expect(await actions({ actor: 'operator' })).toEqual(['policy.put@3', 'device.suspend@2']);
        expect(await actions({ action: 'mqtt.connect' })).toEqual(['mqtt.connect@1', 'mqtt.connect@0']);
        expect(await actions({ result: 'refused' })).toEqual(['mqtt.connect@1']);
        expect(await actions({ since: at(1) })).toEqual(['policy.put@3', 'device.suspend@2', 'mqtt.connect@1']);
        expect(await actions({ until: at(1) })).toEqual(['mqtt.connect@0']);
        expect(await actions({ since: at(1), until: at(3) })).toEqual(['device.suspend@2', 'mqtt.connect@1']);
        expect(await actions({ deviceId: 'b', actor: 'broker', result: 'refused' })).toEqual(['mqtt.connect@1']);
        expect(await actions({ deviceId: 'nobody' })).toEqual([]);
        expect((await registry.queryAudit({ result: 'refused' }))[0]).toMatchObject({ code: 'AUTH_DEVICE_SUSPENDED' });
      });

      it('verifies an empty log and a log written by every kind of write, refusals included', async () => {
        expect(await registry.verifyAudit()).toEqual({ ok: true, entries: 0 });

        await givenBasics();
        await register('sensor-1', 1);
        await expectRefusal(register('sensor-1', 2, { mustBeNew: true }), 'DEVICE_EXISTS');
        await registry.setDeviceStatus({ id: 'sensor-1', status: 'suspended', reason: 'maintenance', audit: audit('device.suspend') });
        await registry.createClaim({ id: 'batch-1', template: 'sensors', certificateSerial: '7f01', maxUses: 1, expiresAt: new Date('2030-01-01T00:00:00Z') }, audit('claim.create'));
        await registry.importAllowlist('sensors', ['sn-1', 'sn-2'], audit('allowlist.import'));
        await registry.createOperatorToken({ name: 'ci', role: 'viewer', tokenHash: tokenHash(1), audit: audit('token.create') });
        // Times out of order, unusual text and nested detail: the chain covers what is stored, whatever it is.
        await registry.appendAudit({ actor: 'api@::1', action: 'api GET /v1/dévices?x=☃', result: 'refused', code: 'API_NOT_FOUND', deviceId: 'sensor-1', detail: { nested: { list: [1, 'two', null] } }, at: new Date('2001-01-01T00:00:00Z') });
        await registry.appendAudit(audit('last'));

        const entries = await registry.queryAudit({ afterId: 0, limit: 1000 });
        const verdict = await registry.verifyAudit();
        expect(verdict).toEqual({ ok: true, entries: entries.length, head: { id: entries.at(-1)?.id, hash: expect.stringMatching(/^[0-9a-f]{64}$/) } });
        expect(entries.map((entry) => entry.action).slice(-2)).toEqual(['api GET /v1/dévices?x=☃', 'last']);

        // The head moves with every entry.
        await registry.appendAudit(audit('one more'));
        const next = await registry.verifyAudit();
        expect(next).toMatchObject({ ok: true, entries: entries.length + 1 });
        expect(next.head?.hash).not.toBe(verdict.head?.hash);
      });

      it('returns 100 entries by default and never more than 1000', async () => {
        for (let n = 0; n < 1001; n += 1) await registry.appendAudit(audit('bulk'));
        expect(await registry.queryAudit()).toHaveLength(100);
        expect(await registry.queryAudit({ limit: 5000 })).toHaveLength(1000);
        expect(await registry.queryAudit({ afterId: 0, limit: 5000 })).toHaveLength(1000);
      });
    });

    describe('operator tokens', () => {
      it('stores a token by its hash, finds it by the hash and lists tokens by name, with the audit entry', async () => {
        const before = Date.now();
        const created = await registry.createOperatorToken({ name: 'line-3', role: 'station', tokenHash: tokenHash(1), audit: audit('token.create') });
        expect(created).toEqual({ name: 'line-3', role: 'station', createdAt: expect.any(Date), revokedAt: null });
        expectRecent(created.createdAt, before);
        await registry.createOperatorToken({ name: 'audit-bot', role: 'viewer', tokenHash: tokenHash(2), audit: audit('token.create') });

        expect(await registry.findOperatorToken(tokenHash(1))).toEqual(created);
        expect(await registry.findOperatorToken(tokenHash(3))).toBeUndefined();
        expect((await registry.listOperatorTokens()).map((token) => `${token.name}:${token.role}`)).toEqual(['audit-bot:viewer', 'line-3:station']);
        expect(await registry.queryAudit({ action: 'token.create' })).toMatchObject([
          { actor: 'operator', result: 'ok', detail: { name: 'audit-bot', role: 'viewer' } },
          { actor: 'operator', result: 'ok', detail: { name: 'line-3', role: 'station' } },
        ]);
        // The hash identifies a token; it is no business of the audit trail.
        expect(JSON.stringify(await registry.queryAudit())).not.toContain(tokenHash(1));
      });

      it('revokes a token for good: revoking again keeps the first date and is audited', async () => {
        await registry.createOperatorToken({ name: 'ops', role: 'operator', tokenHash: tokenHash(1), audit: audit('token.create') });
        const revoked = await registry.revokeOperatorToken('ops', audit('token.revoke'));
        expect(revoked).toMatchObject({ name: 'ops', role: 'operator', revokedAt: expect.any(Date) });
        expect(await registry.findOperatorToken(tokenHash(1))).toEqual(revoked);

        const again = await registry.revokeOperatorToken('ops', audit('token.revoke'));
        expect(again).toEqual(revoked);
        expect(await registry.queryAudit({ action: 'token.revoke' })).toMatchObject([
          { detail: { name: 'ops', alreadyRevoked: true } },
          { detail: { name: 'ops', role: 'operator', alreadyRevoked: false } },
        ]);
      });

      it('refuses a name in use (also by a revoked token), the reserved name admin, bad names, roles and hashes, writing nothing', async () => {
        await registry.createOperatorToken({ name: 'ops', role: 'operator', tokenHash: tokenHash(1), audit: audit('token.create') });
        await registry.revokeOperatorToken('ops', audit('token.revoke'));
        const before = { tokens: await registry.listOperatorTokens(), audit: await registry.queryAudit() };

        const create = (name: string, role = 'viewer', hash = tokenHash(2)) =>
          registry.createOperatorToken({ name, role: role as 'viewer', tokenHash: hash, audit: audit('token.create') });
        await expectRefusal(create('ops'), 'OPERATOR_TOKEN_EXISTS');
        for (const name of ['admin', 'Admin', '', '-x', 'a/b', 'x'.repeat(65)]) await expectRefusal(create(name), 'REQUEST_INVALID');
        await expectRefusal(create('new', 'root'), 'REQUEST_INVALID');
        await expectRefusal(create('new', 'viewer', 'A'.repeat(64)), 'REQUEST_INVALID');
        await expectRefusal(create('new', 'viewer', 'secret-token'), 'REQUEST_INVALID');
        await expectRefusal(registry.revokeOperatorToken('ghost', audit('token.revoke')), 'OPERATOR_TOKEN_NOT_FOUND');

        expect({ tokens: await registry.listOperatorTokens(), audit: await registry.queryAudit() }).toEqual(before);
      });
    });

    describe('certificate authorities', () => {
      const ca = (id: string, role: 'root' | 'device' | 'claim' | 'cross', state: 'next' | 'active' | 'retiring' | 'retired', issuerId: string | null, crossOf: string | null = null) => ({
        id,
        role,
        state,
        fingerprint: `${id}-fingerprint`,
        subject: `CN=${id}`,
        issuerId,
        crossOf,
        pem: `-----BEGIN CERTIFICATE-----\n${id}\n-----END CERTIFICATE-----\n`,
        keyRef: role === 'cross' ? null : `${id}.key`,
        notBefore: new Date('2025-01-01T00:00:00.000Z'),
        notAfter: new Date('2035-01-01T00:00:00.000Z'),
      });
      const first = [ca('root1', 'root', 'active', null), ca('device1', 'device', 'active', 'root1'), ca('claim1', 'claim', 'active', 'root1')];

      it('records the first CAs once and labels what they signed before', async () => {
        await givenBasics();
        await register('old-device', 1);
        await registry.createClaim({ id: 'old-claim', template: 'sensors', certificateSerial: 'c1', maxUses: null, expiresAt: new Date('2035-01-01T00:00:00Z') }, audit('claim.create'));
        expect(await registry.importCertificateAuthorities({ cas: first, firstIssuers: { device: 'device1', claim: 'claim1' }, audit: audit('ca.import') })).toBe(true);
        expect(await registry.importCertificateAuthorities({ cas: [ca('other', 'root', 'active', null)], firstIssuers: { device: 'x', claim: 'y' }, audit: audit('ca.import') })).toBe(false);
        expect((await registry.listCertificateAuthorities()).map((row) => row.id).sort()).toEqual(['claim1', 'device1', 'root1']);
        expect((await registry.listCertificates('old-device'))[0]?.issuerCa).toBe('device1');
        expect((await registry.getClaim('old-claim'))?.issuerCa).toBe('claim1');
        expect(await registry.certificateAuthorityUsage('device1', new Date('2025-06-01T00:00:00Z'))).toEqual({ certificates: 1, claims: 0, authorities: 0 });
        expect(await registry.certificateAuthorityUsage('root1', new Date('2025-06-01T00:00:00Z'))).toEqual({ certificates: 0, claims: 0, authorities: 2 });
        // Expired certificates and claims no longer count.
        expect(await registry.certificateAuthorityUsage('device1', new Date('2027-01-01T00:00:00Z'))).toEqual({ certificates: 0, claims: 0, authorities: 0 });
        expect((await registry.certificateAuthorityUsage('claim1', new Date('2025-06-01T00:00:00Z'))).claims).toBe(1);
      });

      it('moves CA keys to another key store only from the key_ref each row still has', async () => {
        await givenBasics();
        await registry.importCertificateAuthorities({ cas: first, firstIssuers: { device: 'device1', claim: 'claim1' }, audit: audit('ca.import') });
        const uri = 'pkcs11:token=t;object=device1;type=private?module-path=%2Flib%2Fp11.so';
        const after = await registry.changeCertificateAuthorities({ keyRefs: [{ id: 'device1', from: 'device1.key', to: uri }], audit: audit('ca.keys.import') });
        expect(after.find((row) => row.id === 'device1')?.keyRef).toBe(uri);
        const before = await registry.listCertificateAuthorities();
        await expectRefusal(
          registry.changeCertificateAuthorities({ keyRefs: [{ id: 'root1', from: 'root1.key', to: uri }, { id: 'device1', from: 'device1.key', to: uri }], audit: audit('ca.keys.import') }),
          'PKI_CA_ROTATION_CONFLICT',
        );
        expect(await registry.listCertificateAuthorities()).toEqual(before);
      });

      it('moves states atomically, refuses a stale transition and a retire while the CA is in use, writing nothing', async () => {
        await givenBasics();
        await registry.importCertificateAuthorities({ cas: first, firstIssuers: { device: 'device1', claim: 'claim1' }, audit: audit('ca.import') });
        await register('early', 1, { certificate: { issuerCa: 'device1' } }); // expired since 2026: not in service
        await registry.changeCertificateAuthorities({ add: [ca('device2', 'device', 'next', 'root1')], audit: audit('ca.prepare') });
        await registry.changeCertificateAuthorities({
          transitions: [
            { id: 'device1', from: 'active', to: 'retiring' },
            { id: 'device2', from: 'next', to: 'active' },
          ],
          audit: audit('ca.activate'),
        });
        // A certificate the old CA signed just before the activation committed is not recorded against it.
        await expectRefusal(register('late', 3, { certificate: { issuerCa: 'device1' } }), 'PKI_CA_ROTATION_CONFLICT');
        expect(await registry.getDevice('late')).toBeUndefined();
        await register('moving', 2, { certificate: { issuerCa: 'device2', notAfter: new Date('2035-01-01T00:00:00Z') } });
        await registry.changeCertificateAuthorities({ add: [ca('device3', 'device', 'next', 'root1')], audit: audit('ca.prepare') });
        await registry.changeCertificateAuthorities({
          transitions: [
            { id: 'device2', from: 'active', to: 'retiring' },
            { id: 'device3', from: 'next', to: 'active' },
          ],
          audit: audit('ca.activate'),
        });
        // device1 is retired first (nothing of it is in service), then device2 is in use by 'moving'.
        await registry.changeCertificateAuthorities({ transitions: [{ id: 'device1', from: 'retiring', to: 'retired' }], mustBeUnused: { id: 'device1', now: new Date() }, audit: audit('ca.retire') });
        // What device1 signed before (an expired row) reads as signed by a retired CA at admission.
        expect((await registry.getAdmission(certificate(1).serial))?.issuerRetired).toBe(true);
        expect((await registry.getAdmission(certificate(2).serial))?.issuerRetired).toBe(false);
        const before = await registry.listCertificateAuthorities();
        const auditBefore = await registry.queryAudit({ limit: 1000 });
        await expectRefusal(
          registry.changeCertificateAuthorities({ transitions: [{ id: 'device2', from: 'retiring', to: 'retired' }], mustBeUnused: { id: 'device2', now: new Date() }, audit: audit('ca.retire') }),
          'PKI_CA_IN_USE',
        );
        await expectRefusal(registry.changeCertificateAuthorities({ transitions: [{ id: 'device3', from: 'next', to: 'active' }], audit: audit('ca.activate') }), 'PKI_CA_ROTATION_CONFLICT');
        expect(await registry.listCertificateAuthorities()).toEqual(before);
        expect(await registry.queryAudit({ limit: 1000 })).toEqual(auditBefore);
        // One active CA per role, whatever the caller asks.
        await expect(registry.changeCertificateAuthorities({ add: [ca('device4', 'device', 'active', 'root1')], audit: audit('ca.prepare') })).rejects.toThrow();

        await registry.setDeviceStatus({ id: 'moving', status: 'revoked', reason: 'keyCompromise', audit: audit('device.revoke') });
        const after = await registry.changeCertificateAuthorities({ transitions: [{ id: 'device2', from: 'retiring', to: 'retired' }], mustBeUnused: { id: 'device2', now: new Date() }, audit: audit('ca.retire') });
        expect(after.find((row) => row.id === 'device2')?.state).toBe('retired');
        expect((await registry.queryAudit({ action: 'ca.retire' })).map((entry) => entry.result)).toEqual(['ok', 'ok']);
      });
    });
  });
}

/** A stand-in for the SHA-256 of a token. */
function tokenHash(n: number): string {
  return String(n).padStart(2, '0').repeat(32);
}

function audit(action: string, overrides: Partial<AuditInput> = {}): AuditInput {
  return { actor: 'operator', action, result: 'ok', ...overrides };
}

function documentFor(topic: string): PolicyDocument {
  return { statements: [{ sid: 'only', effect: 'allow', actions: ['publish', 'subscribe', 'receive'], topics: [topic] }] };
}

function template(name: string) {
  return { name, policy: 'default', validityDays: 365, keyTypes: ['EC P-256', 'EC P-384'], requireAllowlist: false, allowReenroll: false };
}

/** Stand-in certificate data: the registry stores it and never parses it. */
function certificate(n: number | string, overrides: Partial<NewCertificate> = {}): NewCertificate {
  const hex = Buffer.from(String(n)).toString('hex');
  return {
    serial: `7a${hex}`,
    fingerprint: `f1${hex}`,
    publicKeyHash: `e5${hex}`,
    notBefore: new Date('2025-01-01T00:00:00.000Z'),
    notAfter: new Date('2026-01-01T00:00:00.000Z'),
    pem: `-----BEGIN CERTIFICATE-----\nfake-${n}\n-----END CERTIFICATE-----\n`,
    ...overrides,
  };
}

async function expectRefusal(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  const error: unknown = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(FleetgateError);
  expect((error as FleetgateError).code).toBe(code);
}

/** Times the registry stamps come from its clock: here the real one, so they fall within the test. */
function expectRecent(value: Date | null, notBefore: number): void {
  expect(value).toBeInstanceOf(Date);
  expect(value?.getTime()).toBeGreaterThanOrEqual(notBefore);
  expect(value?.getTime()).toBeLessThanOrEqual(Date.now());
}
