import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { type AuditFeed, can, type ExplainRequest, type DeviceDetail, type Explanation, get, operatorRevocationReasons, type NoteBody, type Policy, post, query, type RevokeBody, type Role, statusNoteMaxLength } from '../api.ts';
import { Connected, ErrorBox, relative, StatusBadge, when } from '../format.ts';
import { usePolled } from '../use-polled.ts';
import { AuditTable } from './audit-feed.ts';

type Action = 'suspend' | 'resume' | 'revoke';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One device: record, live session, certificates, policy with an explain box, audit trail; and, for roles
 * that may, suspend / resume / revoke behind a confirmation that asks for the reason. After a suspend or
 * revoke the page polls until the broker reports the session gone, so the operator sees it cut.
 */
export function DeviceDetailPage({ id, role }: { id: string; role: Role }) {
  const path = `/v1/devices/${encodeURIComponent(id)}`;
  const detail = usePolled(() => get<DeviceDetail>(path), 2_000, [id]);
  const audit = usePolled(() => get<AuditFeed>(`/v1/audit${query({ deviceId: id, limit: 50 })}`), 5_000, [id]);
  const [pending, setPending] = useState<Action | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>(undefined);

  const d = detail.data;
  if (d === undefined) return html`<section><h1>${id}</h1>${detail.error ? html`<${ErrorBox} error=${detail.error} />` : html`<p class="muted">Loading…</p>`}</section>`;

  const done = async (action: Action, hadSession: boolean) => {
    setPending(undefined);
    if (action !== 'resume' && hadSession) {
      setNotice('Closing the live session…');
      for (let i = 0; i < 100; i++) {
        const now = await get<DeviceDetail>(path);
        if (now.session === null) {
          setNotice(`Live session closed at ${new Date().toLocaleTimeString()}.`);
          break;
        }
        await sleep(150);
      }
    } else {
      setNotice(action === 'resume' ? 'Resumed: the device may connect again.' : undefined);
    }
    await Promise.all([detail.reload(), audit.reload()]);
  };

  const { device } = d;
  const mayAct = can.changeStatus(role) && device.status !== 'revoked';
  return html`<section>
    <p class="crumbs"><a href="#/devices">Devices</a> /</p>
    <h1>${device.id} <${StatusBadge} status=${device.status} /> <${Connected} connected=${d.session !== null} /></h1>
    ${notice ? html`<p class="notice" role="status">${notice}</p>` : null}
    <${ErrorBox} error=${detail.error} />
    ${mayAct
      ? html`<div class="actions">
          ${device.status === 'active' ? html`<button type="button" class="warn" onClick=${() => setPending('suspend')}>Suspend</button>` : null}
          ${device.status === 'suspended' ? html`<button type="button" onClick=${() => setPending('resume')}>Resume</button>` : null}
          <button type="button" class="danger" onClick=${() => setPending('revoke')}>Revoke</button>
        </div>`
      : null}
    <div class="panels">
      <div class="panel">
        <h2>Record</h2>
        <dl>
          <dt>kind</dt><dd>${device.kind}</dd>
          <dt>template</dt><dd>${device.template}</dd>
          <dt>policy</dt><dd>${d.effectivePolicy ?? '—'}${device.policy === null ? ' (from the template)' : ' (override)'}</dd>
          <dt>status reason</dt><dd>${device.statusReason ?? '—'}</dd>
          <dt>created</dt><dd>${when(device.createdAt)}</dd>
          <dt>updated</dt><dd>${when(device.updatedAt)}</dd>
          ${Object.entries(device.attributes).map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}
          ${Object.entries(device.reportedAttributes ?? {}).map(([k, v]) => html`<dt>${k} (reported, not in policy)</dt><dd>${v}</dd>`)}
        </dl>
      </div>
      <div class="panel">
        <h2>Session</h2>
        ${d.session === null
          ? html`<p class="muted" data-test="no-session">Not connected.</p>`
          : html`<dl data-test="session">
              <dt>connected</dt><dd>${when(d.session.connectedAt)} (${relative(d.session.connectedAt)})</dd>
              <dt>from</dt><dd>${d.session.remoteAddress ?? '—'}</dd>
              <dt>certificate</dt><dd><code>${d.session.certificateSerial}</code></dd>
            </dl>`}
      </div>
    </div>
    <div class="panel">
      <h2>Certificates</h2>
      <table class="list">
        <thead><tr><th>serial</th><th>status</th><th>issued</th><th>expires</th><th>revoked</th></tr></thead>
        <tbody>
          ${d.certificates.map(
            (c) => html`<tr>
              <td><code>${c.serial}</code></td>
              <td><${StatusBadge} status=${c.status} /></td>
              <td>${when(c.issuedAt)}</td>
              <td>${when(c.notAfter)} (${relative(c.notAfter)})</td>
              <td>${c.revokedAt ? `${when(c.revokedAt)} ${c.revocationReason ?? ''}` : '—'}</td>
            </tr>`,
          )}
        </tbody>
      </table>
    </div>
    ${d.effectivePolicy ? html`<${PolicyPanel} name=${d.effectivePolicy} deviceId=${device.id} />` : null}
    <div class="panel">
      <h2>Audit trail</h2>
      <${ErrorBox} error=${audit.error} />
      <${AuditTable} entries=${audit.data?.items ?? []} />
    </div>
    ${pending ? html`<${ConfirmDialog} action=${pending} id=${device.id} hadSession=${d.session !== null} onCancel=${() => setPending(undefined)} onDone=${done} />` : null}
  </section>`;
}

function PolicyPanel({ name, deviceId }: { name: string; deviceId: string }) {
  const policy = usePolled(() => get<Policy>(`/v1/policies/${encodeURIComponent(name)}`), 0, [name]);
  const [action, setAction] = useState<ExplainRequest['action']>('publish');
  const [topic, setTopic] = useState(`devices/${deviceId}/telemetry`);
  const [answer, setAnswer] = useState<Explanation | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const explain = async (event: Event) => {
    event.preventDefault();
    try {
      setError(undefined);
      setAnswer(await post<Explanation>(`/v1/policies/${encodeURIComponent(name)}/explain`, { deviceId, action, topic } satisfies ExplainRequest));
    } catch (caught) {
      setAnswer(undefined);
      setError(caught);
    }
  };
  return html`<div class="panel">
    <h2>Policy <code>${name}</code>${policy.data ? html` <span class="muted small">version ${policy.data.version}</span>` : null}</h2>
    <${ErrorBox} error=${policy.error} />
    <table class="list">
      <thead><tr><th>#</th><th>effect</th><th>actions</th><th>topics</th></tr></thead>
      <tbody>
        ${(policy.data?.document.statements ?? []).map(
          (s, i) => html`<tr class=${answer?.statementIndex === i ? 'highlight' : ''}>
            <td>${s.sid ?? i}</td>
            <td><span class=${`badge badge-${s.effect}`}>${s.effect}</span></td>
            <td>${s.actions.join(', ')}</td>
            <td>${s.topics.map((t) => html`<code class="topic">${t}</code>`)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    <form class="explain" onSubmit=${explain}>
      <strong>Explain:</strong>
      <select name="action" value=${action} onChange=${(e: Event) => setAction((e.target as HTMLSelectElement).value as ExplainRequest['action'])}>
        <option>publish</option>
        <option>subscribe</option>
        <option>receive</option>
      </select>
      <input name="topic" size="40" value=${topic} onInput=${(e: Event) => setTopic((e.target as HTMLInputElement).value)} aria-label="topic" />
      <button type="submit">Explain</button>
    </form>
    <${ErrorBox} error=${error} />
    ${answer
      ? html`<p class=${answer.allowed ? 'verdict allowed' : 'verdict denied'} data-test="verdict">
          <strong>${answer.allowed ? 'Allowed' : 'Denied'}</strong>
          ${answer.code ? html` <code>${answer.code}</code>` : null}
          ${answer.effect === 'no-match' ? ' — no statement matches (no match means deny)' : null}
          ${answer.statementIndex !== null ? html` — statement ${answer.statement?.sid ?? answer.statementIndex} (${answer.effect}) via <code>${answer.pattern}</code>` : null}
          ${answer.effect === null ? ' — decided by the gateway before any policy' : null}
        </p>`
      : null}
  </div>`;
}

function ConfirmDialog({ action, id, hadSession, onCancel, onDone }: { action: Action; id: string; hadSession: boolean; onCancel: () => void; onDone: (action: Action, hadSession: boolean) => Promise<void> }) {
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    try {
      await post(`/v1/devices/${encodeURIComponent(id)}/${action}`, (reason === '' && action !== 'revoke' ? {} : { reason }) satisfies NoteBody | RevokeBody);
      await onDone(action, hadSession);
    } catch (caught) {
      setError(caught);
      setBusy(false);
    }
  };
  const consequence = {
    revoke: 'Its certificates are revoked, its live session is closed at once and it can never connect again. Revocation is final.',
    suspend: 'Its live session is closed at once and it cannot connect until it is resumed.',
    resume: 'It may connect again with its current certificate.',
  }[action];
  const onKeyDown = (event: KeyboardEvent) => {
    if (event.key === 'Escape' && !busy) onCancel();
  };
  return html`<div class="backdrop" onKeyDown=${onKeyDown}>
    <form class="modal" role="dialog" aria-modal="true" aria-labelledby="confirm-title" onSubmit=${submit}>
      <h2 id="confirm-title">${action[0]?.toUpperCase()}${action.slice(1)} ${id}?</h2>
      <p>${consequence}</p>
      ${action === 'revoke'
        ? html`<label
            >Reason (RFC 5280)
            <select name="reason" required autofocus value=${reason} onChange=${(e: Event) => setReason((e.target as HTMLSelectElement).value)}>
              <option value="" disabled>choose…</option>
              ${operatorRevocationReasons.map((r) => html`<option value=${r}>${r}</option>`)}
            </select></label
          >`
        : html`<label>Note for the audit trail <input name="reason" maxlength=${statusNoteMaxLength} autofocus value=${reason} onInput=${(e: Event) => setReason((e.target as HTMLInputElement).value)} /></label>`}
      <${ErrorBox} error=${error} />
      <div class="actions">
        <button type="button" onClick=${onCancel} disabled=${busy}>Cancel</button>
        <button type="submit" class=${action === 'resume' ? '' : 'danger'} disabled=${busy || (action === 'revoke' && reason === '')}>Confirm ${action}</button>
      </div>
    </form>
  </div>`;
}
