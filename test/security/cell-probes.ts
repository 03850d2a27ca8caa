import { enrollTopics, fromBase64, pemBlocks, renewTopics, toBase64 } from '../../core/index.ts';
import { request } from 'node:https';
import { deviceKeyAndCsr } from '../helpers/device-keys.ts';
import { until } from '../helpers/until.ts';
import { type Cell, forgedVictim, type MqttEntry, mqttEntryPoints, routeTable, victim } from './attack-table.ts';
import type { AttackerKit } from './attacker-kit.ts';
import { connectPacket, openRaw, pingreqPacket, publishPacket, type RawConnection, subscribePacket } from './raw-mqtt.ts';

/** What one probe saw. Assertions on it live in attack-table.test.ts. */
export interface Observation {
  /** CONNACK return code, if a CONNACK came. */
  readonly connack?: number;
  /** The server closed the connection. */
  readonly closed?: boolean;
  readonly suback?: readonly number[];
  /** Messages on the victims' topics that reached the attacker (delivery). */
  readonly received?: readonly string[];
  /** What the attacker's publish or will put in front of the backend watcher (topic: payload). */
  readonly leaked?: readonly string[];
  /** The reply to an enrollment or renewal request over MQTT. */
  readonly reply?: { readonly accepted: boolean; readonly code?: string };
  readonly http?: { readonly status: number; readonly code?: string };
  /** For positive controls: the legitimate holder got what it asked for. */
  readonly succeeded?: boolean;
}

let markers = 0;
const marker = (cell: Cell) => `attack-${(markers += 1)}-${cell.capability}`;

/** The MQTT username/password an attacker tries: a token where it holds one (it must not stand in for a certificate). */
function passwordOf(kit: AttackerKit, cell: Cell) {
  const token = cell.capability === 'legitimate' ? undefined : kit.token(cell.capability);
  return token === undefined ? {} : { username: 'fleetgate', password: token };
}

async function open(kit: AttackerKit, cell: Cell, options: { tcpOnly?: boolean } = {}): Promise<RawConnection> {
  return openRaw({ port: kit.gw.mqttPort, ca: kit.gw.ca, ...options }, await kit.credential(cell.capability, cell.as));
}

async function connackOf(connection: RawConnection): Promise<number | undefined> {
  const packet = await connection.next((p) => p.type === 'connack');
  return packet?.type === 'connack' ? packet.returnCode : undefined;
}

/** After the attacker's last packet: a PINGREQ answered (or a close) means everything before it was handled. */
async function settle(connection: RawConnection, connack: number | undefined): Promise<void> {
  if (connection.isClosed()) return;
  if (connack !== 0) {
    // Refused at CONNECT: nothing after it is read. Close from this side rather than wait for the server.
    connection.destroy();
    await connection.closed;
    return;
  }
  const before = connection.packets.filter((p) => p.type === 'pingresp').length;
  connection.write(pingreqPacket);
  await connection.next(() => connection.packets.filter((p) => p.type === 'pingresp').length > before);
}

const targetOf = (cell: Cell) => (cell.capability === 'forged-serial' ? forgedVictim : cell.capability === 'legitimate' ? cell.as : victim);

const newLeaks = (kit: AttackerKit, from: number, payload: string) => kit.watched.slice(from).filter((m) => m.payload === payload).map((m) => `${m.topic}: ${m.payload}`);

export async function probeMqtt(kit: AttackerKit, cell: Cell & { entry: MqttEntry }): Promise<Observation> {
  switch (cell.entry) {
    case 'tls-handshake':
      return probeHandshake(kit, cell);
    case 'mqtt-connect':
      return probeConnect(kit, cell);
    case 'mqtt-publish':
      return probePublish(kit, cell);
    case 'mqtt-subscribe':
    case 'mqtt-delivery':
      return probeSubscribe(kit, cell);
    case 'mqtt-will':
      return probeWill(kit, cell);
    case 'mqtt-enroll':
    case 'mqtt-renew':
      return probeCertificateRequest(kit, cell);
  }
}

/** Connects and sends nothing: the server must close a socket that does not become a session (R8). */
async function probeHandshake(kit: AttackerKit, cell: Cell): Promise<Observation> {
  const connection = await open(kit, cell, { tcpOnly: cell.capability === 'none' });
  if (cell.capability === 'legitimate') {
    connection.write(connectPacket({ clientId: cell.as }));
    const connack = await connackOf(connection);
    connection.destroy();
    return { connack, succeeded: connack === 0 };
  }
  // The connect timeout of the fixture is one second; allow generous slack for a loaded machine.
  const closed = await Promise.race([connection.closed.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 8000))]);
  connection.destroy();
  return { closed, connack: connection.packets.find((p) => p.type === 'connack') ? 0 : undefined };
}

async function probeConnect(kit: AttackerKit, cell: Cell): Promise<Observation> {
  const connection = await open(kit, cell);
  connection.write(connectPacket({ clientId: cell.as, ...passwordOf(kit, cell) }));
  const connack = await connackOf(connection);
  connection.destroy();
  await connection.closed;
  return { connack, closed: connack !== 0, succeeded: connack === 0 };
}

/** CONNECT and PUBLISH in one write: nothing may be published before (or without) admission. */
async function probePublish(kit: AttackerKit, cell: Cell): Promise<Observation> {
  const payload = marker(cell);
  const topic = cell.capability === 'legitimate' ? `devices/${cell.as}/telemetry` : `devices/${targetOf(cell)}/cmd`;
  const from = kit.watched.length;
  const connection = await open(kit, cell);
  connection.write(connectPacket({ clientId: cell.as, ...passwordOf(kit, cell) }), publishPacket(topic, payload, { qos: 1, packetId: 7 }));
  const connack = await connackOf(connection);
  if (connack === 0) await connection.next((p) => p.type === 'other' && p.code === 4); // PUBACK, or the close
  await settle(connection, connack);
  const closed = connack !== 0 || connection.isClosed();
  connection.destroy();
  if (cell.capability === 'legitimate') {
    await until(() => newLeaks(kit, from, payload).length > 0, 'the legitimate publish to reach the watcher', 5000).catch(() => {});
  } else {
    await kit.watcherPublish('devices/watch/fence', payload + '-fence');
  }
  const leaked = newLeaks(kit, from, payload);
  return { connack, closed, leaked, succeeded: leaked.length > 0 };
}

/** Subscribes to what the attacker may not read, then the backend writes there: nothing may reach it. */
async function probeSubscribe(kit: AttackerKit, cell: Cell): Promise<Observation> {
  const target = targetOf(cell);
  const filters =
    cell.capability === 'legitimate'
      ? [`devices/${target}/#`]
      : cell.entry === 'mqtt-subscribe'
        ? [`devices/${target}/#`, '#', 'devices/#', '$fleetgate/#', '$SYS/#']
        : [`devices/${target}/cmd`, renewTopics(target).accepted];
  const payload = marker(cell);
  const connection = await open(kit, cell);
  connection.write(connectPacket({ clientId: cell.as, ...passwordOf(kit, cell) }), subscribePacket(3, filters));
  const connack = await connackOf(connection);
  const suback = connack === 0 ? await connection.next((p) => p.type === 'suback') : undefined;
  await kit.watcherPublish(`devices/${target}/cmd`, payload);
  await settle(connection, connack);
  const received = connection.packets.flatMap((p) => (p.type === 'publish' && p.payload === payload ? [p.topic] : []));
  const closed = connack !== 0 || connection.isClosed();
  connection.destroy();
  const granted = suback?.type === 'suback' ? suback.granted : undefined;
  return { connack, closed, ...(granted ? { suback: granted } : {}), received, succeeded: received.length > 0 && granted?.every((code) => code < 0x80) === true };
}

/** A retained will on the victim's topic, then an abrupt close: neither the will nor a retained copy may appear. */
async function probeWill(kit: AttackerKit, cell: Cell): Promise<Observation> {
  const payload = marker(cell);
  const topic = `devices/${targetOf(cell)}/status`;
  const from = kit.watched.length;
  const connection = await open(kit, cell);
  connection.write(connectPacket({ clientId: cell.as, ...passwordOf(kit, cell), will: { topic, payload, qos: 1, retain: true } }));
  const connack = await connackOf(connection);
  connection.destroy(); // no DISCONNECT: the will fires if the session existed
  await connection.closed;
  const broker = kit.gw.gateway.broker;
  await until(() => !broker.sessions().some((s) => s.clientId === cell.as && cell.as !== victim), 'the attacker session to be gone', 5000).catch(() => {});
  if (cell.capability === 'legitimate') {
    await until(() => newLeaks(kit, from, payload).length > 0, 'the legitimate will to reach the watcher', 5000).catch(() => {});
    return { connack, leaked: newLeaks(kit, from, payload), succeeded: newLeaks(kit, from, payload).length > 0 };
  }
  await kit.watcherPublish('devices/watch/fence', payload + '-fence');
  // A retained copy would reach any later subscriber: look with a fresh one.
  const reader = await kit.gw.connect('watch-retained', await kit.device('watch-retained', 'backend'));
  const retained: string[] = [];
  reader.on('message', (t, p) => p.toString() === payload && retained.push(t));
  await reader.subscribeAsync(topic, { qos: 1 });
  const fence = `${payload}-retained-fence`;
  const fenced = new Promise<void>((resolve) => reader.on('message', (_t, p) => p.toString() === fence && resolve()));
  await reader.subscribeAsync('devices/watch/fence', { qos: 1 });
  await kit.watcherPublish('devices/watch/fence', fence);
  await fenced;
  await reader.endAsync();
  return { connack, closed: true, leaked: [...newLeaks(kit, from, payload), ...retained.map((t) => `retained ${t}`)] };
}

/** Enrollment or renewal over MQTT, pipelined: reply topics, then the request with the attacker's key. */
async function probeCertificateRequest(kit: AttackerKit, cell: Cell): Promise<Observation> {
  const isClaimSession = ['manufacturer-ca', 'batch-claim', 'exhausted-claim', 'revoked-claim'].includes(cell.capability) || cell.as.startsWith('SN-');
  const topics =
    cell.entry === 'mqtt-enroll'
      ? enrollTopics(cell.as)
      : // A claim session tries to renew the victim; everyone else asks for the identity it claims.
        renewTopics(isClaimSession ? victim : cell.as);
  const { csr } = await deviceKeyAndCsr(cell.entry === 'mqtt-enroll' ? cell.as : targetOf(cell));
  const connection = await open(kit, cell);
  connection.write(
    connectPacket({ clientId: cell.as, ...passwordOf(kit, cell) }),
    subscribePacket(5, [topics.accepted, topics.rejected]),
    publishPacket(topics.request, JSON.stringify({ csr }), { qos: 1, packetId: 6 }),
  );
  const connack = await connackOf(connection);
  const reply = connack === 0 ? await connection.next((p) => p.type === 'publish' && (p.topic === topics.accepted || p.topic === topics.rejected), 8000) : undefined;
  const closed = connection.isClosed();
  connection.destroy();
  if (reply?.type !== 'publish') return { connack, closed };
  const accepted = reply.topic === topics.accepted;
  const code = accepted ? undefined : (JSON.parse(reply.payload) as { code?: string }).code;
  return { connack, closed, reply: { accepted, ...(code ? { code } : {}) }, succeeded: accepted };
}

/** The DER of a PEM CSR in base64, as EST sends it (RFC 7030 §4.2.1). */
const estBody = (csrPem: string) => toBase64(pemBlocks(csrPem, ['CERTIFICATE REQUEST'])[0] ?? fromBase64(''));

export async function probeHttp(kit: AttackerKit, cell: Cell): Promise<Observation> {
  const route = routeTable.find((r) => `${r.method} ${r.url}` === cell.entry);
  if (route === undefined) throw new Error(`no route for ${cell.entry}`);
  const token = route.access.kind === 'public' ? undefined : kit.token(cell.capability);
  // Operators present a token where they hold one; everyone else offers the certificate they hold.
  const credential = route.access.kind === 'public' || (route.access.kind === 'roles' && token !== undefined) ? undefined : await kit.credential(cell.capability, cell.as);
  let body: unknown;
  let contentType = 'application/json';
  if (route.access.kind === 'certificate') {
    const { csr } = await deviceKeyAndCsr(cell.as === '-' ? victim : cell.as);
    if (route.url.startsWith('/.well-known/est/')) {
      body = estBody(csr);
      contentType = 'application/pkcs10';
    } else body = route.url === '/v1/enroll' ? { csr, serial: cell.as } : { csr };
  } else if (route.url === '/v1/relay/certificate-requests') {
    // The relay attack: renew the forged victim onto the attacker's key, stating its serial in the body.
    const { csr } = await deviceKeyAndCsr(forgedVictim);
    body = { kind: 'renew', certificateSerial: kit.serials.forgedVictim, deviceId: forgedVictim, payload: Buffer.from(JSON.stringify({ csr })).toString('base64') };
  } else if (route.method !== 'GET') {
    // Deliberately invalid: a caller the guard lets through gets 400 and changes nothing.
    body = route.url === '/v1/pki/ocsp' ? 'not an OCSP request' : { bogus: true };
    if (route.url === '/v1/pki/ocsp') contentType = 'application/ocsp-request';
  }
  const response = await freshHttps(kit, route.method, route.path, { body, contentType, ...(token ? { token } : {}), ...(credential ? { credential } : {}) });
  const code = response.body?.code;
  const ok = response.status >= 200 && response.status < 300;
  return { http: { status: response.status, ...(code ? { code } : {}) }, succeeded: ok };
}

export const isMqttEntry = (entry: string): entry is MqttEntry => entry in mqttEntryPoints;


/**
 * One HTTPS request on a connection of its own, never resuming a TLS session: a resumed session carries no
 * certificate chain, and a cell must see what a first contact sees (the cache of Node's global agent would
 * otherwise resume the session an earlier cell opened with the same certificate).
 */
function freshHttps(
  kit: AttackerKit,
  method: string,
  path: string,
  options: { body?: unknown; contentType: string; token?: string; credential?: { cert: string; key: string } },
): Promise<{ status: number; body: { code?: string } | undefined }> {
  const payload = options.body === undefined ? undefined : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const headers = {
      accept: 'application/json',
      ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
      ...(payload === undefined ? {} : { 'content-type': options.contentType, 'content-length': Buffer.byteLength(payload) }),
    };
    const req = request(
      { host: '127.0.0.1', port: kit.gw.apiPort, method, path, agent: false, ca: kit.gw.ca, servername: 'localhost', ...(options.credential ?? {}), headers },
      (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => {
          let body: { code?: string } | undefined;
          try {
            body = JSON.parse(text) as { code?: string };
          } catch {
            body = undefined;
          }
          resolve({ status: res.statusCode ?? 0, body: typeof body === 'object' && body !== null ? body : undefined });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}
