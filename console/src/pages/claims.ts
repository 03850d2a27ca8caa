import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { type AllowlistBody, type AllowlistImport, can, type Claim, type ClaimPage, type CreateClaim as CreateClaimBody, type CreatedClaim, get, listLimit, post, type Role, type TemplatePage } from '../api.ts';
import { UsageBar } from '../charts.ts';
import { downloadText } from '../download.ts';
import { ErrorBox, relative, StatusBadge } from '../format.ts';
import { serialsFromCsv } from '../serials-csv.ts';
import { usePolled } from '../use-polled.ts';

/** Claims (usage vs max-uses), templates, and for admins and stations: new claims and allow-list imports. */
export function ClaimsPage({ role }: { role: Role }) {
  // One page of the most each ({items, next}): more templates or claims than that do not fit a table anyway.
  const templates = usePolled(() => get<TemplatePage>(`/v1/templates?limit=${listLimit.max}`), 0, []);
  const claims = usePolled(() => get<ClaimPage>(`/v1/claims?limit=${listLimit.max}`), 5_000, []);
  const names = (templates.data?.items ?? []).map((t) => t.name);

  return html`<section>
    <h1>Claims and templates</h1>
    ${can.issueClaims(role) && names.length > 0
      ? html`<div class="panels">
          <${CreateClaim} templates=${names} onCreated=${() => void claims.reload()} />
          <${ImportAllowlist} templates=${names} onImported=${() => void templates.reload()} />
        </div>`
      : null}
    <div class="panel">
      <h2>Claims</h2>
      <${ErrorBox} error=${claims.error} />
      <table class="list">
        <thead><tr><th>claim</th><th>kind</th><th>template</th><th>status</th><th>uses</th><th></th><th>expires</th><th></th></tr></thead>
        <tbody>
          ${(claims.data?.items ?? []).map(
            (c) => html`<tr data-claim=${c.claimId}>
              <td><code>${c.claimId}</code></td>
              <td>${c.kind}</td>
              <td>${c.template}</td>
              <td><${StatusBadge} status=${c.status} /></td>
              <td class="num">${c.uses} / ${c.maxUses ?? '∞'}</td>
              <td><${UsageBar} used=${c.uses} max=${c.maxUses} /></td>
              <td>${relative(c.expiresAt)}</td>
              <td>${can.revokeClaims(role) && c.status === 'active' ? html`<${RevokeClaim} claim=${c} onRevoked=${() => void claims.reload()} />` : null}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
    <div class="panel">
      <h2>Templates</h2>
      <${ErrorBox} error=${templates.error} />
      <table class="list">
        <thead><tr><th>name</th><th>policy</th><th>validity</th><th>key types</th><th>allow-list</th><th>re-enrollment</th><th>renewal after expiry</th></tr></thead>
        <tbody>
          ${(templates.data?.items ?? []).map(
            (t) => html`<tr>
              <td>${t.name}</td>
              <td><code>${t.policy}</code></td>
              <td>${t.validityDays} d</td>
              <td>${t.keyTypes.join(', ')}</td>
              <td>${t.requireAllowlist ? 'required' : 'no'}</td>
              <td>${t.allowReenroll ? 'allowed' : 'no'}</td>
              <td>${t.renewAfterExpiryDays > 0 ? `within ${t.renewAfterExpiryDays} d` : 'no'}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
  </section>`;
}

function CreateClaim({ templates, onCreated }: { templates: string[]; onCreated: () => void }) {
  const [template, setTemplate] = useState(templates[0] ?? 'default');
  const [maxUses, setMaxUses] = useState('100');
  const [days, setDays] = useState('30');
  const [created, setCreated] = useState<CreatedClaim | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      const body = { template, ...(maxUses.trim() === '' ? {} : { maxUses: Number(maxUses) }), expiresInSeconds: Math.round(Number(days) * 86_400) } satisfies CreateClaimBody;
      setCreated(await post<CreatedClaim>('/v1/claims', body));
      onCreated();
    } catch (caught) {
      setError(caught);
    }
  };
  return html`<form class="panel" onSubmit=${submit} aria-label="Create a claim">
    <h2>New claim</h2>
    <label
      >Template
      <select name="template" value=${template} onChange=${(e: Event) => setTemplate((e.target as HTMLSelectElement).value)}>
        ${templates.map((t) => html`<option>${t}</option>`)}
      </select></label
    >
    <label>Max uses <input name="maxUses" type="number" min="1" value=${maxUses} onInput=${(e: Event) => setMaxUses((e.target as HTMLInputElement).value)} placeholder="no limit" /></label>
    <label>Expires in (days) <input name="days" type="number" min="1" value=${days} onInput=${(e: Event) => setDays((e.target as HTMLInputElement).value)} /></label>
    <button type="submit">Create claim</button>
    <${ErrorBox} error=${error} />
    ${created
      ? html`<div class="created" role="status">
          <p>Claim <code>${created.claimId}</code> created. Save its files now: the key is shown only this once.</p>
          <div class="actions">
            <button type="button" onClick=${() => downloadText('claim.crt', created.certificate)}>Download claim.crt</button>
            <button type="button" onClick=${() => downloadText('claim.key', created.privateKey)}>Download claim.key</button>
            <button type="button" onClick=${() => downloadText('ca.crt', created.ca)}>Download ca.crt</button>
          </div>
        </div>`
      : null}
  </form>`;
}

function ImportAllowlist({ templates, onImported }: { templates: string[]; onImported: () => void }) {
  const [template, setTemplate] = useState(templates[0] ?? 'default');
  const [file, setFile] = useState<File | undefined>(undefined);
  const [result, setResult] = useState<string | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const submit = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    setResult(undefined);
    if (file === undefined) return;
    try {
      const serials = serialsFromCsv(await file.text());
      const answer = await post<AllowlistImport>(`/v1/templates/${encodeURIComponent(template)}/allowlist`, { serials } satisfies AllowlistBody);
      setResult(`${serials.length} serials read, ${answer.added} new; the allow-list of ${template} now has ${answer.total}.`);
      onImported();
    } catch (caught) {
      setError(caught);
    }
  };
  return html`<form class="panel" onSubmit=${submit} aria-label="Import an allow-list">
    <h2>Allow-list import</h2>
    <p class="muted small">CSV, serials in the first column; a <code>serial</code> header and <code>#</code> comments are skipped.</p>
    <label
      >Template
      <select name="template" value=${template} onChange=${(e: Event) => setTemplate((e.target as HTMLSelectElement).value)}>
        ${templates.map((t) => html`<option>${t}</option>`)}
      </select></label
    >
    <label>File <input name="file" type="file" accept=".csv,text/csv,text/plain" onChange=${(e: Event) => setFile((e.target as HTMLInputElement).files?.[0])} /></label>
    <button type="submit" disabled=${file === undefined}>Import</button>
    <${ErrorBox} error=${error} />
    ${result ? html`<p class="notice" role="status">${result}</p>` : null}
  </form>`;
}

function RevokeClaim({ claim, onRevoked }: { claim: Claim; onRevoked: () => void }) {
  const [error, setError] = useState<unknown>(undefined);
  const revoke = async () => {
    // A native confirm is enough here: revoking a claim stops new enrollments and touches no device.
    if (!window.confirm(`Revoke claim ${claim.claimId}? No further device can enroll with it.`)) return;
    try {
      await post(`/v1/claims/${encodeURIComponent(claim.claimId)}/revoke`, {});
      onRevoked();
    } catch (caught) {
      setError(caught);
    }
  };
  return html`<button type="button" class="small warn" onClick=${revoke}>Revoke</button><${ErrorBox} error=${error} />`;
}
