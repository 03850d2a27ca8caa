import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Cuts every connection and stops listening (connection refused), like a server that died. */
  stop(): Promise<void>;
  /** Keeps connections open but forwards nothing: a dead network path that only timeouts notice. */
  stall(): void;
  /** Serves again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** A TCP proxy on 127.0.0.1 in front of a local service (PostgreSQL, Redis), standing in for one that goes away. */
export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let stalled = false;
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      if (!stalled) upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!stalled) client.write(chunk);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as net.AddressInfo).port;
  const stop = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  return {
    port,
    stop,
    stall() {
      stalled = true;
    },
    async start() {
      // A stalled connection lost bytes in both directions: it can never be trusted again.
      if (stalled) for (const socket of sockets) socket.destroy();
      stalled = false;
      if (!server.listening) await listen(port);
    },
    async close() {
      if (server.listening) await stop();
    },
  };
}
