import { html } from 'htm/preact';
import { type CheckReport, type CheckResult, get } from '../api.ts';
import { ErrorBox, when } from '../format.ts';
import { usePolled } from '../use-polled.ts';

/** The API caches a run for a few seconds; the checks move slowly, so refresh twice a minute. */
const refreshMs = 30_000;
const badge = { pass: 'badge-ok', warn: 'badge-suspended', fail: 'badge-revoked' } as const;

function CheckRow({ check }: { check: CheckResult }) {
  return html`<tr class=${`check-${check.status}`} data-test=${`check-${check.id}`}>
    <td><span class=${`badge ${badge[check.status]}`}>${check.status}</span></td>
    <td>
      <strong>${check.title}</strong> <span class="muted small">${check.id}</span>
      ${check.findings.length > 0
        ? html`<ul class="findings">
            ${check.findings.map((f) => html`<li><strong>${f.subject}</strong>: ${f.detail}</li>`)}
          </ul>`
        : null}
      ${check.nextStep ? html`<p class="next-step"><strong>Next:</strong> ${check.nextStep}</p>` : null}
    </td>
    <td>${check.count}</td>
  </tr>`;
}

/**
 * Fleet health checks (README "Fleet health checks"): GET /v1/checks, the same results as `fleetgate check`
 * and the Prometheus gauges. Failed checks first, then warnings; each finding says what to do next.
 */
export function ChecksPage() {
  const { data, error, reload } = usePolled(() => get<CheckReport>('/v1/checks'), refreshMs, []);
  const order = { fail: 0, warn: 1, pass: 2 } as const;
  const items = data ? [...data.items].sort((a, b) => order[a.status] - order[b.status]) : [];
  const failed = items.filter((i) => i.status === 'fail').length;
  const warned = items.filter((i) => i.status === 'warn').length;
  return html`<section>
    <h1>Fleet health checks</h1>
    <div class="filters">
      <button type="button" onClick=${() => void reload()}>Refresh</button>
      ${data
        ? html`<span data-test="checks-summary"><span class=${`badge ${badge[data.status]}`}>${data.status}</span> ${items.length} checks: ${failed} failed, ${warned} ${warned === 1 ? 'warning' : 'warnings'} · checked ${when(data.checkedAt)}</span>`
        : html`<span class="muted">loading…</span>`}
    </div>
    <${ErrorBox} error=${error} />
    <table class="list checks">
      <thead><tr><th>status</th><th>check</th><th>count</th></tr></thead>
      <tbody>${items.map((check) => html`<${CheckRow} check=${check} key=${check.id} />`)}</tbody>
    </table>
  </section>`;
}
