import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect, createSecureContext, type TLSSocket } from 'node:tls';
import { encodeConnect } from './mqtt-wire.ts';

/**
 * The client side of bench/memory-per-connection.ts, in its own process (pinned apart from the server):
 * opens one mTLS connection per credential, sends CONNECT and, when `mqtt`, waits for CONNACK 0; then holds
 * them idle (keepalive 0: no PINGREQ) until told to close. Raw frames (bench/mqtt-wire.ts), no mqtt.js.
 *
 *   fork bench/memory-clients.ts <credentials.json> <port> <mqtt|tls> <concurrency>
 */
const [file, portText, protocol, concurrencyText] = process.argv.slice(2);
if (file === undefined || portText === undefined || process.send === undefined) throw new Error('usage: fork bench/memory-clients.ts <credentials.json> <port> <mqtt|tls> <concurrency>');
const { ca, devices } = JSON.parse(readFileSync(file, 'utf8')) as { ca: string; devices: { id: string; key: string; cert: string }[] };
const port = Number(portText);
const held: TLSSocket[] = [];
let failed = 0;

async function open(device: { id: string; key: string; cert: string }): Promise<void> {
  const socket = connect({ host: '127.0.0.1', port, secureContext: createSecureContext({ ca, key: device.key, cert: device.cert }), servername: 'localhost' });
  socket.on('error', () => {});
  await once(socket, 'secureConnect');
  socket.write(encodeConnect(device.id, 0));
  if (protocol === 'mqtt') {
    const [connack] = (await once(socket, 'data')) as [Buffer];
    if (connack[0] !== 0x20 || connack[3] !== 0) throw new Error(`${device.id}: CONNACK ${connack.toString('hex')}`);
  }
  socket.on('data', () => {});
  held.push(socket);
}

let next = 0;
await Promise.all(
  Array.from({ length: Number(concurrencyText ?? 32) }, async () => {
    while (next < devices.length) {
      const device = devices[next++]!;
      await open(device).catch(() => failed++);
    }
  }),
);
process.send({ kind: 'connected', connected: held.length, failed });
process.on('message', () => {
  for (const socket of held) socket.destroy();
  process.exit(0);
});
