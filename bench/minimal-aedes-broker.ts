/**
 * The "minimal aedes" broker of the side-by-side suite (issue 16's yardstick: fleetgate should be within 10 %
 * of it on connects): aedes 1.2 with its defaults (in-memory persistence and emitter) behind node:tls mTLS with
 * fleetgate's server certificate and CA, and only the rules fleetgate and the suite's Mosquitto also apply:
 *   - a client certificate is required and verified (TLS 1.2 or later);
 *   - the MQTT client id must equal the certificate's CN (CONNACK 5 otherwise);
 *   - everyone may publish and subscribe under `devices/<CN>/…` only;
 *   - the service identities named on the command line may also subscribe anywhere under `devices/`.
 * Nothing else: no registry, audit, flow control or metrics. That is the point of the comparison. One fix is
 * applied, the one fleetgate applies too (preventEmitterRecursion, broker/aedes-internals.ts): stock mqemitter
 * starts each queued message from inside the previous one, so a QoS 0 flood overflows the stack and the
 * process dies (it did in this suite's first runs). The fix drains the same queue in a loop: no work added.
 *
 * Run by bench/minimal-aedes-process.ts as its own process:
 *   node --import tsx bench/minimal-aedes-broker.ts PORT CA_FILE CERT_FILE KEY_FILE SERVICE[,SERVICE…]
 */
import { readFileSync } from 'node:fs';
import { createServer, type TLSSocket } from 'node:tls';
import { Aedes, type AuthenticateError } from 'aedes';
import { emitterOf, preventEmitterRecursion } from '../broker/aedes-internals.ts';

const [portArg, caFile, certFile, keyFile, servicesArg] = process.argv.slice(2);
if (portArg === undefined || caFile === undefined || certFile === undefined || keyFile === undefined) {
  process.stderr.write('usage: minimal-aedes-broker.ts PORT CA_FILE CERT_FILE KEY_FILE [SERVICE,…]\n');
  process.exit(2);
}
const services = new Set((servicesArg ?? '').split(',').filter(Boolean));

/** `devices/<cn>/…`: a topic or filter inside the identity's own subtree (no wildcard in the CN itself). */
const ownsTopic = (cn: string, topic: string) => topic.startsWith(`devices/${cn}/`);
/** The CN of the verified client certificate; the TLS server already refused unverified ones. */
const cnOf = (socket: unknown): string | undefined => {
  const subject = (socket as TLSSocket).getPeerCertificate?.().subject as { CN?: string | string[] } | undefined;
  const cn = subject?.CN;
  return typeof cn === 'string' && !/[+#/]/.test(cn) ? cn : undefined;
};

const broker = await Aedes.createBroker();
preventEmitterRecursion(emitterOf(broker));
broker.authenticate = (client, _username, _password, done) => {
  const cn = cnOf(client.conn);
  if (cn !== undefined && cn === client.id) return done(null, true);
  const error = new Error('client id is not the certificate CN') as AuthenticateError;
  error.returnCode = 5;
  done(error, false);
};
broker.authorizePublish = (client, packet, callback) => {
  // client null: the broker's own publications (none here besides $SYS, which aedes does not route to clients without a subscription).
  if (client === null || ownsTopic(client.id, packet.topic)) return callback(null);
  callback(new Error('publish outside devices/<CN>/'));
};
broker.authorizeSubscribe = (client, subscription, callback) => {
  const allowed = ownsTopic(client.id, subscription.topic) || (services.has(client.id) && subscription.topic.startsWith('devices/'));
  callback(null, allowed ? subscription : null);
};

const server = createServer(
  { ca: readFileSync(caFile), cert: readFileSync(certFile), key: readFileSync(keyFile), requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' },
  (socket) => broker.handle(socket),
);
// A failed handshake (a device the CA does not vouch for) is the client's problem, not a reason to exit.
server.on('tlsClientError', () => {});
server.listen(Number(portArg), '127.0.0.1', () => process.stdout.write(`minimal aedes ready on ${portArg}\n`));

process.once('SIGTERM', () => {
  server.close();
  broker.close(() => process.exit(0));
  // Open client sockets keep server.close() waiting; the broker's close ends them, the timer is the backstop.
  setTimeout(() => process.exit(0), 2000).unref();
});
