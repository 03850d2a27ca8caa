import { html } from 'htm/preact';
import { type AuditEntry, type AuditFeed, type Device, type DevicePage, type DeviceDetail, get, listLimit, query, type Session, type SessionList } from '../api.ts';
import { BarChart, ColumnChart } from '../charts.ts';
import { ErrorBox, relative } from '../format.ts';
import { usePolled } from '../use-polled.ts';
import { AuditTable } from './audit-feed.ts';

const hourMs = 3_600_000;
const bucketMs = 5 * 60_000;
const expiryHorizonDays = 30;
/** Certificates are read per device (the API lists them with each device); bound the work per refresh. */
const expiryScanLimit = 100;

interface Overview {
  readonly devices: Device[];
  readonly truncated: boolean;
  readonly sessions: Session[];
  readonly lastHour: AuditEntry[];
  readonly expiring: { id: string; notAfter: string }[];
  readonly expiryBuckets: number[];
  readonly scanned: number;
}

async function allDevices(): Promise<{ devices: Device[]; truncated: boolean }> {
  const devices: Device[] = [];
  let after: string | undefined;
  for (let page = 0; page < 10; page++) {
    const answer = await get<DevicePage>(`/v1/devices${query({ limit: listLimit.max, after })}`);
    devices.push(...answer.items);
    if (answer.next === null) return { devices, truncated: false };
    after = answer.next;
  }
  return { devices, truncated: true };
}

async function loadOverview(): Promise<Overview> {
  const since = new Date(Date.now() - hourMs).toISOString();
  const [{ devices, truncated }, sessions, audit] = await Promise.all([
    allDevices(),
    get<SessionList>('/v1/sessions'),
    get<AuditFeed>(`/v1/audit${query({ since, limit: listLimit.max })}`),
  ]);
  const active = devices.filter((d) => d.status === 'active').slice(0, expiryScanLimit);
  const expiry = await expiryOf(active);
  return { devices, truncated, sessions: sessions.items, lastHour: audit.items, ...expiry, scanned: active.length };
}

/** Expiry changes slowly and costs one request per device: read it once a minute, not every refresh. */
let expiryCache: { at: number; key: string; value: Pick<Overview, 'expiring' | 'expiryBuckets'> } | undefined;

async function expiryOf(active: readonly Device[]): Promise<Pick<Overview, 'expiring' | 'expiryBuckets'>> {
  const key = active.map((d) => d.id).join(',');
  if (expiryCache !== undefined && expiryCache.key === key && Date.now() - expiryCache.at < 60_000) return expiryCache.value;
  const details = await Promise.all(active.map((d) => get<DeviceDetail>(`/v1/devices/${encodeURIComponent(d.id)}`)));
  const now = Date.now();
  const limits = [7, 30, 90].map((days) => now + days * 86_400_000);
  const expiryBuckets = [0, 0, 0, 0];
  const expiring: { id: string; notAfter: string }[] = [];
  for (const detail of details) {
    for (const certificate of detail.certificates.filter((c) => c.status === 'active')) {
      const at = new Date(certificate.notAfter).getTime();
      const index = limits.findIndex((limit) => at < limit);
      expiryBuckets[index === -1 ? 3 : index] = (expiryBuckets[index === -1 ? 3 : index] ?? 0) + 1;
      if (at < now + expiryHorizonDays * 86_400_000) expiring.push({ id: detail.device.id, notAfter: certificate.notAfter });
    }
  }
  expiring.sort((a, b) => a.notAfter.localeCompare(b.notAfter));
  expiryCache = { at: now, key, value: { expiring, expiryBuckets } };
  return expiryCache.value;
}

/**
 * How many refusals an audit entry stands for: sampled entries (floods of unauthenticated requests, see the
 * README "Revocation, audit and metrics") carry their count in `detail.refused`; any other entry is one.
 */
const refusalsIn = (entry: AuditEntry): number => (typeof entry.detail?.refused === 'number' ? entry.detail.refused : 1);

/** Enrollments (first certificate or renewal) and refusals per five minutes over the last hour. */
function activityBuckets(entries: readonly AuditEntry[], now = Date.now()) {
  const start = now - hourMs;
  const buckets = Array.from({ length: hourMs / bucketMs }, (_, i) => {
    const at = new Date(start + i * bucketMs);
    return { label: at.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }), values: [0, 0] };
  });
  for (const entry of entries) {
    const index = Math.floor((new Date(entry.at).getTime() - start) / bucketMs);
    const bucket = buckets[Math.min(buckets.length - 1, Math.max(0, index))];
    if (bucket === undefined) continue;
    if (entry.result === 'refused') bucket.values[1] = (bucket.values[1] ?? 0) + refusalsIn(entry);
    else if (entry.action === 'device.enroll' || entry.action === 'device.renew') bucket.values[0] = (bucket.values[0] ?? 0) + 1;
  }
  return buckets;
}

export function OverviewPage() {
  const { data, error } = usePolled(loadOverview, 10_000, []);
  if (data === undefined) return html`<section><h1>Overview</h1>${error ? html`<${ErrorBox} error=${error} />` : html`<p class="muted">Loading…</p>`}</section>`;
  const count = (status: string) => data.devices.filter((d) => d.kind === 'device' && d.status === status).length;
  const connected = data.sessions.filter((s) => s.kind === 'device').length;
  const enrolling = data.sessions.filter((s) => s.kind === 'claim').length;
  const enrollments = data.lastHour.filter((e) => e.result === 'ok' && e.action === 'device.enroll').length;
  const refusals = data.lastHour.filter((e) => e.result === 'refused').reduce((sum, e) => sum + refusalsIn(e), 0);
  // The audit answer is newest first.
  const recentRefusals = data.lastHour.filter((e) => e.result === 'refused').slice(0, 5);
  return html`<section>
    <h1>Overview</h1>
    <${ErrorBox} error=${error} />
    <div class="tiles">
      <div class="tile"><span class="tile-value" data-test="connected-now">${connected}</span><span class="tile-label">connected now</span></div>
      <div class="tile"><span class="tile-value">${count('active') + count('suspended') + count('revoked')}</span><span class="tile-label">devices${data.truncated ? ' (first 10,000)' : ''}</span></div>
      <div class="tile"><span class="tile-value">${enrollments}</span><span class="tile-label">enrollments, last hour</span></div>
      <div class="tile"><span class="tile-value">${refusals}</span><span class="tile-label">refusals, last hour</span></div>
      <div class="tile"><span class="tile-value">${data.expiring.length}</span><span class="tile-label">certificates expiring within ${expiryHorizonDays} d</span></div>
    </div>
    <div class="panels">
      <div class="panel">
        <h2>Devices by status</h2>
        <${BarChart}
          title="Devices by status"
          bars=${[
            { label: 'connected', value: connected, series: 'connected' },
            { label: 'active', value: count('active'), series: 'active' },
            { label: 'suspended', value: count('suspended'), series: 'suspended' },
            { label: 'revoked', value: count('revoked'), series: 'revoked' },
            { label: 'enrolling now', value: enrolling, series: 'claim' },
          ]}
        />
      </div>
      <div class="panel">
        <h2>Last hour</h2>
        <${ColumnChart}
          title="Enrollments and refusals per 5 minutes, last hour"
          buckets=${activityBuckets(data.lastHour)}
          series=${[
            { name: 'enrollments and renewals', class: 'series-active' },
            { name: 'refusals', class: 'series-revoked' },
          ]}
        />
        <p class="legend"><span class="key series-active"></span> enrollments and renewals <span class="key series-revoked"></span> refusals</p>
      </div>
      <div class="panel">
        <h2>Certificate expiry</h2>
        <${BarChart}
          title="Active certificates by time to expiry"
          bars=${[
            { label: '< 7 days', value: data.expiryBuckets[0] ?? 0, series: 'revoked' },
            { label: '7–30 days', value: data.expiryBuckets[1] ?? 0, series: 'suspended' },
            { label: '30–90 days', value: data.expiryBuckets[2] ?? 0, series: 'claim' },
            { label: 'later', value: data.expiryBuckets[3] ?? 0, series: 'active' },
          ]}
        />
        <p class="muted small">Active certificates of ${data.scanned === expiryScanLimit ? `the first ${expiryScanLimit}` : 'all'} active devices.</p>
        ${data.expiring.length > 0
          ? html`<ul class="compact">
              ${data.expiring.slice(0, 8).map((e) => html`<li><a href=${`#/devices/${encodeURIComponent(e.id)}`}>${e.id}</a> expires ${relative(e.notAfter)}</li>`)}
            </ul>`
          : null}
      </div>
    </div>
    <div class="panel">
      <h2>Latest refusals</h2>
      ${recentRefusals.length === 0
        ? html`<p class="muted">No refusals in the last hour.</p>`
        : html`<${AuditTable} entries=${recentRefusals} />`}
    </div>
  </section>`;
}
