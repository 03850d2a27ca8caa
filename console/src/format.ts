import { html } from 'htm/preact';

/** Dates as the operator's local time, to the second; the API speaks ISO 8601 UTC. */
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' });
}

/** "in 3 d", "5 min ago": for expiry and connection times. */
export function relative(iso: string, now = Date.now()): string {
  const ms = new Date(iso).getTime() - now;
  const abs = Math.abs(ms);
  const [value, unit] = abs < 60_000 ? [abs / 1000, 's'] : abs < 3_600_000 ? [abs / 60_000, 'min'] : abs < 86_400_000 ? [abs / 3_600_000, 'h'] : [abs / 86_400_000, 'd'];
  const text = `${Math.floor(value)} ${unit}`;
  return ms >= 0 ? `in ${text}` : `${text} ago`;
}

export function StatusBadge({ status }: { status: string }) {
  return html`<span class=${`badge badge-${status}`}>${status}</span>`;
}

export function Connected({ connected }: { connected: boolean }) {
  return connected ? html`<span class="badge badge-connected">connected</span>` : html`<span class="badge badge-offline">not connected</span>`;
}

/** An API refusal as the operator should read it: the code first (it is what the README documents). */
export function ErrorBox({ error }: { error: unknown }) {
  if (error === undefined || error === null) return null;
  const { code, message } = error as { code?: string; message?: string };
  return html`<p class="error" role="alert">${code ? html`<code>${code}</code> ` : null}${message ?? String(error)}</p>`;
}
