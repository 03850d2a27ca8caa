import type { FastifyInstance } from 'fastify';
import type { CertificateRequestHandler } from '../../core/index.ts';
import { type OperatorAuth, routeGuard } from './operator-auth.ts';

export interface RelayRouteDeps {
  readonly certificates: CertificateRequestHandler;
  readonly auth: OperatorAuth;
}

/**
 * POST /v1/relay/certificate-requests: how a broker running without the CA (`fleetgate broker`) answers an
 * enrollment or renewal request that a device published over MQTT. The broker authenticated the device's
 * TLS session, so it states who asked; that is why only a privileged token (admin, or a station token made
 * for the broker) may call it. The request body is the device's MQTT payload, unchanged (base64), and goes
 * through exactly the checks a request arriving at this process's own broker would.
 */
export function registerRelayRoutes(app: FastifyInstance, deps: RelayRouteDeps): void {
  const { allow } = routeGuard(deps.auth);
  app.post<{
    Body:
      | { kind: 'enroll'; claimKey: string; serial: string; boundSerial?: string; payload: string }
      | { kind: 'renew'; certificateSerial: string; deviceId: string; payload: string };
  }>(
    '/v1/relay/certificate-requests',
    {
      onRequest: allow(['admin', 'station']),
      bodyLimit: 64 * 1024,
      schema: {
        tags: ['enrollment'],
        summary: 'Relay an MQTT enrollment or renewal request from a broker process (broker token)',
        security: [{ bearer: [] }],
        body: {
          oneOf: [
            {
              type: 'object',
              additionalProperties: false,
              required: ['kind', 'claimKey', 'serial', 'payload'],
              properties: {
                kind: { const: 'enroll' },
                claimKey: { type: 'string', minLength: 1, maxLength: 256 },
                serial: { type: 'string', minLength: 1, maxLength: 128 },
                boundSerial: { type: 'string', minLength: 1, maxLength: 128 },
                payload: { type: 'string', maxLength: 44_000, contentEncoding: 'base64' },
              },
            },
            {
              type: 'object',
              additionalProperties: false,
              required: ['kind', 'certificateSerial', 'deviceId', 'payload'],
              properties: {
                kind: { const: 'renew' },
                certificateSerial: { type: 'string', minLength: 1, maxLength: 256 },
                deviceId: { type: 'string', minLength: 1, maxLength: 128 },
                payload: { type: 'string', maxLength: 44_000, contentEncoding: 'base64' },
              },
            },
          ],
        },
      },
    },
    async (request) => {
      const body = request.body;
      const payload = new Uint8Array(Buffer.from(body.payload, 'base64'));
      if (body.kind === 'enroll') {
        return deps.certificates.enroll({
          claimKey: body.claimKey,
          serial: body.serial,
          ...(body.boundSerial !== undefined ? { boundSerial: body.boundSerial } : {}),
          body: payload,
          transport: 'mqtt',
        });
      }
      return deps.certificates.renew({ certificateSerial: body.certificateSerial, deviceId: body.deviceId, body: payload, transport: 'mqtt' });
    },
  );
}
