import { type CertificateReply, type CertificateRequestHandler, errorCodes, type ErrorCode, FleetgateError } from '../core/index.ts';
import type { Logger } from 'pino';
import type { AuditInput } from '../registry/index.ts';
import { type ApiClientOptions, apiRequest } from './api-client.ts';

const knownCodes = new Set<string>(errorCodes);

/**
 * Enrollment and renewal for a broker that runs without the CA: the request a device published is relayed
 * to the provisioning API (POST /v1/relay/certificate-requests), and its coded refusal comes back as the
 * same FleetgateError, so the device sees the same `rejected` reply as on the all-in-one gateway.
 */
export function relayedCertificateRequests(api: ApiClientOptions, deps: { log: Logger; audit: (entry: AuditInput) => Promise<unknown> }): CertificateRequestHandler {
  const { log } = deps;
  // One options object for the broker's life: the kept-alive connection pool is keyed by it.
  const client: ApiClientOptions = { ...api, keepAlive: true };
  const forward = async (body: Record<string, unknown>): Promise<CertificateReply> => {
    let response;
    try {
      response = await apiRequest<CertificateReply | { code?: string; message?: string }>(client, 'POST', '/v1/relay/certificate-requests', body);
    } catch (error) {
      log.error({ err: error, api: api.baseUrl }, 'provisioning API unreachable: enrollment and renewal over MQTT refused');
      throw new FleetgateError('PROVISIONING_UNAVAILABLE', { cause: error, detail: { api: api.baseUrl } });
    }
    if (response.status >= 200 && response.status < 300) return response.body as CertificateReply;
    const refusal = response.body as { code?: string; message?: string };
    // API_* codes (token refused, rate limited) are about this broker, not about the device's request.
    if (typeof refusal.code === 'string' && knownCodes.has(refusal.code) && !refusal.code.startsWith('API_') && response.status < 500) {
      throw new FleetgateError(refusal.code as ErrorCode, refusal.message ? { message: refusal.message } : {});
    }
    log.error({ status: response.status, code: refusal.code }, 'provisioning API refused the relay; check FLEETGATE_BROKER_TOKEN (a token of role broker)');
    throw new FleetgateError('PROVISIONING_UNAVAILABLE', { detail: { status: response.status, code: refusal.code } });
  };
  /**
   * Provisioning audits the refusals it makes; a request that never reached it is audited here, with the
   * same action and actor it would have used.
   */
  const relay = async (body: Record<string, unknown>, context: { actor: string; action: string; deviceId: string }): Promise<CertificateReply> => {
    try {
      return await forward(body);
    } catch (error) {
      if (error instanceof FleetgateError && error.code === 'PROVISIONING_UNAVAILABLE') {
        await deps
          .audit({ ...context, result: 'refused', code: error.code, detail: { transport: 'mqtt', ...error.detail } })
          .catch((auditError: unknown) => log.error({ err: auditError }, 'audit write failed'));
      }
      throw error;
    }
  };
  const payload = (body: Uint8Array | unknown) => Buffer.from(body instanceof Uint8Array ? body : new TextEncoder().encode(JSON.stringify(body))).toString('base64');
  const base64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');
  return {
    // The session's certificate goes along: provisioning decides who it speaks for, not this broker.
    enroll: (input) =>
      relay(
        { kind: 'enroll', certificate: base64(input.certificate), serial: input.serial ?? input.boundSerial ?? '', payload: payload(input.body) },
        { actor: `claim:${input.boundSerial ?? input.claimKey}`, action: 'device.enroll', deviceId: input.serial ?? input.boundSerial ?? 'unknown' },
      ),
    renew: (input) =>
      relay(
        { kind: 'renew', certificate: base64(input.certificate), payload: payload(input.body) },
        { actor: `device:${input.deviceId}`, action: 'device.renew', deviceId: input.deviceId },
      ),
  };
}
