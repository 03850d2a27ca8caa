import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { get, post, type Role, type RotationCampaign, type RotationCampaignList, type StartRotation } from '../api.ts';
import { ErrorBox, StatusBadge, when } from '../format.ts';
import { usePolled } from '../use-polled.ts';

/**
 * Rotation campaigns (README "Rotation campaigns"): each campaign's progress, refreshed every two seconds,
 * with pause, resume and close for the roles the API lets do them, and a form to start one. The counts are
 * the API's; nothing is computed here but the bar.
 */
export function RotationsPage({ role }: { role: Role }) {
  const { data, error, reload } = usePolled(() => get<RotationCampaignList>('/v1/rotations'), 2_000, []);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const mayAct = role === 'admin' || role === 'operator';

  const act = async (campaign: RotationCampaign, action: 'pause' | 'resume' | 'close') => {
    if (action === 'close' && !window.confirm(`Close campaign ${campaign.id} for good? Devices already told may still renew.`)) return;
    try {
      await post(`/v1/rotations/${encodeURIComponent(campaign.id)}/${action}`, undefined);
      setActionError(undefined);
    } catch (caught) {
      setActionError(caught);
    }
    await reload();
  };

  const campaigns = data?.items ?? [];
  return html`<section>
    <h1>Rotation campaigns</h1>
    ${mayAct ? html`<${StartForm} onStarted=${reload} />` : null}
    <${ErrorBox} error=${error ?? actionError} />
    <table class="list" aria-label="Rotation campaigns">
      <thead>
        <tr><th>campaign</th><th>state</th><th>selector</th><th>renewed</th><th>notified</th><th>failed</th><th>offline</th><th>pending</th><th>started</th>${mayAct ? html`<th></th>` : null}</tr>
      </thead>
      <tbody>
        ${campaigns.map(
          (c) => html`<tr data-campaign=${c.id}>
            <td><code>${c.id}</code></td>
            <td><${StatusBadge} status=${c.state} /></td>
            <td>${c.selector} <span class="muted small">at ${c.ratePerSecond}/s</span></td>
            <td><progress max=${Math.max(1, c.progress.selected)} value=${c.progress.renewed} aria-label=${`${c.progress.renewed} of ${c.progress.selected} renewed`}></progress> ${c.progress.renewed}/${c.progress.selected}</td>
            <td>${c.progress.notified}</td>
            <td>${c.progress.failed}</td>
            <td>${c.progress.offline}</td>
            <td>${c.progress.pending}</td>
            <td>${when(c.createdAt)}</td>
            ${mayAct
              ? html`<td class="actions">
                  ${c.state === 'running' ? html`<button type="button" class="small" onClick=${() => act(c, 'pause')}>Pause</button>` : null}
                  ${c.state === 'paused' ? html`<button type="button" class="small" onClick=${() => act(c, 'resume')}>Resume</button>` : null}
                  ${c.state === 'running' || c.state === 'paused' ? html`<button type="button" class="small danger" onClick=${() => act(c, 'close')}>Close</button>` : null}
                </td>`
              : null}
          </tr>`,
        )}
      </tbody>
    </table>
    ${data !== undefined && campaigns.length === 0 ? html`<p class="muted">No campaigns yet.</p>` : null}
  </section>`;
}

function StartForm({ onStarted }: { onStarted: () => Promise<void> }) {
  const [select, setSelect] = useState('');
  const [rate, setRate] = useState('50');
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    try {
      // An id list is sent as `ids=a,b,c` → the API's `ids` list (the CLI reads it from a file instead).
      const trimmed = select.trim();
      const body: StartRotation = trimmed.startsWith('ids=')
        ? { select: 'ids', ids: trimmed.slice(4).split(/[\s,]+/).filter((id) => id !== ''), ratePerSecond: Number(rate) }
        : { select: trimmed, ratePerSecond: Number(rate) };
      await post<RotationCampaign>('/v1/rotations', body);
      setError(undefined);
      setSelect('');
      await onStarted();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="filters" aria-label="Start a campaign" onSubmit=${submit}>
    <label>Devices <input name="select" required placeholder="template=sensor · expires-within=30d · ids=a,b" value=${select} onInput=${(e: Event) => setSelect((e.target as HTMLInputElement).value)} /></label>
    <label>Per second <input name="rate" type="number" min="1" max="1000" required value=${rate} onInput=${(e: Event) => setRate((e.target as HTMLInputElement).value)} /></label>
    <button type="submit" disabled=${busy}>Start campaign</button>
    <${ErrorBox} error=${error} />
  </form>`;
}
