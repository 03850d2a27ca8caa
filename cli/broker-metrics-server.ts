import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * `fleetgate broker --metrics-port`: plain HTTP for Prometheus and the load balancer's health check, since
 * a broker process has no HTTPS API. `/healthz` answers 503 while the broker refuses new sessions (cut off
 * from Redis), so a load balancer can send devices to another node.
 */
export async function startBrokerMetricsServer(options: {
  host: string;
  port: number;
  metricsText: () => Promise<string>;
  unavailableReason: () => string | undefined;
}): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/metrics') {
      options.metricsText().then(
        (text) => response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text),
        () => response.writeHead(500).end(),
      );
      return;
    }
    if (request.method === 'GET' && request.url === '/healthz') {
      const reason = options.unavailableReason();
      response.writeHead(reason === undefined ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify(reason === undefined ? { status: 'ok' } : { status: 'unavailable', code: 'CLUSTER_UNAVAILABLE', reason }));
      return;
    }
    response.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'NOT_FOUND', message: 'GET /metrics or /healthz' }));
  });
  // exclusive: each --workers child answers for itself (node:cluster would share one port round-robin).
  server.listen({ port: options.port, host: options.host, exclusive: true });
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
