import type { FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { type Clock, createAuditSampler, type ErrorCode, type RefusalSummary } from '../../core/index.ts';
import type { AuditInput, Registry } from '../../registry/index.ts';

/** Longest request path kept in an audit entry: an unknown route's path is whatever the caller sent. */
const maxActionChars = 200;
const windowMs = 1000;

export interface EdgeRefusalAudit {
  /** Records a refusal made before any use-case ran; resolves once its entry is written, if it is written now. */
  record(request: FastifyRequest, code: ErrorCode, status: number): Promise<void>;
  /** Writes the pending summaries (server shutdown). */
  close(): Promise<void>;
}

/**
 * Audit entries for the refusals the API makes at its edge, before authentication succeeded or a use-case
 * ran: no or bad credentials, unknown routes, malformed requests, the rate limit. Anyone can cause these at
 * any rate, so they are sampled per code and second (core/audit-sampler.ts): the first of each second is
 * written as it is, with `detail.refused: 1`; the rest of that second become one entry with `detail.refused`
 * (their number), `sources` (client addresses) and the last of them as actor and action. Summing `refused`
 * over the entries gives every refusal. Refusals inside use-cases (an authenticated caller) are not sampled:
 * provisioning/audited.ts writes each of them.
 */
export function createEdgeRefusalAudit(deps: { registry: Registry; log: Logger; clock: Clock }): EdgeRefusalAudit {
  const writes = new Set<Promise<void>>();
  const write = (input: AuditInput): Promise<void> => {
    const written = deps.registry.appendAudit(input).then(
      () => undefined,
      (error: unknown) => deps.log.error({ err: error }, 'audit write failed'),
    );
    writes.add(written);
    void written.finally(() => writes.delete(written));
    return written;
  };

  const sampler = createAuditSampler<AuditInput, Promise<void>>({
    windowMs,
    now: () => deps.clock.now().getTime(),
    schedule: (callback, delayMs) => {
      const timer = setTimeout(callback, delayMs);
      timer.unref();
      return () => clearTimeout(timer);
    },
    emit: (summary) => write(entryFor(summary)),
  });

  return {
    async record(request, code, status) {
      const path = request.routeOptions.url ?? request.url;
      const input: AuditInput = {
        actor: `api@${request.ip}`,
        action: `api ${request.method} ${path.length > maxActionChars ? `${path.slice(0, maxActionChars)}…` : path}`,
        result: 'refused',
        code,
        detail: { status },
      };
      await sampler.record(code, request.ip, input);
    },
    async close() {
      sampler.flush();
      await Promise.allSettled([...writes]);
    },
  };
}

function entryFor(summary: RefusalSummary<AuditInput>): AuditInput {
  const { sample } = summary;
  if (summary.first) return { ...sample, detail: { ...sample.detail, refused: 1 } };
  return {
    ...sample,
    detail: {
      ...sample.detail,
      refused: summary.refused,
      sources: summary.sources,
      unlistedSources: summary.unlistedSources,
      from: new Date(summary.firstAt).toISOString(),
      to: new Date(summary.lastAt).toISOString(),
    },
  };
}
