import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { type AuditEntry, type AuditFeed, get, listLimit, query } from '../api.ts';
import { ErrorBox, when } from '../format.ts';

const keep = 500;

export function AuditTable({ entries }: { entries: readonly AuditEntry[] }) {
  return html`<table class="list audit">
    <thead><tr><th>#</th><th>time</th><th>actor</th><th>action</th><th>result</th><th>device</th><th>detail</th></tr></thead>
    <tbody>
      ${entries.map(
        (e) => html`<tr class=${e.result === 'refused' ? 'refused' : ''}>
          <td>${e.id}</td>
          <td>${when(e.at)}</td>
          <td>${e.actor}</td>
          <td>${e.action}</td>
          <td>${e.result === 'refused' ? html`<span class="badge badge-revoked">${e.code ?? 'refused'}</span>` : html`<span class="badge badge-active">ok</span>`}</td>
          <td>${e.deviceId ? html`<a href=${`#/devices/${encodeURIComponent(e.deviceId)}`}>${e.deviceId}</a>` : '—'}</td>
          <td class="detail">${e.detail ? JSON.stringify(e.detail) : ''}</td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

/**
 * The audit trail as it is written: the newest entries first, then GET /v1/audit?afterId=<newest> every
 * second for what came after (oldest first, so nothing is skipped however many arrive at once).
 */
export function AuditFeedPage() {
  const [entries, setEntries] = useState<AuditEntry[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  const [paused, setPaused] = useState(false);
  const [refusedOnly, setRefusedOnly] = useState(false);
  const newest = useRef<number | undefined>(undefined);
  const pausedRef = useRef(paused);
  pausedRef.current = paused;

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        if (!pausedRef.current) {
          if (newest.current === undefined) {
            const first = await get<AuditFeed>(`/v1/audit${query({ limit: 100 })}`);
            if (stopped) return;
            newest.current = first.items[0]?.id ?? 0;
            setEntries(first.items);
          } else {
            const next = await get<AuditFeed>(`/v1/audit${query({ afterId: newest.current, limit: listLimit.max })}`);
            if (stopped) return;
            const last = next.items.at(-1);
            if (last !== undefined) {
              newest.current = last.id;
              setEntries((current) => [...next.items.reverse(), ...current].slice(0, keep));
            }
          }
          setError(undefined);
        }
      } catch (caught) {
        if (!stopped) setError(caught);
      }
      if (!stopped) timer = setTimeout(() => void tick(), 1_000);
    };
    void tick();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, []);

  const shown = refusedOnly ? entries.filter((e) => e.result === 'refused') : entries;
  return html`<section>
    <h1>Live audit feed</h1>
    <div class="filters">
      <button type="button" onClick=${() => setPaused(!paused)}>${paused ? 'Resume feed' : 'Pause feed'}</button>
      <label class="check"><input type="checkbox" checked=${refusedOnly} onChange=${(e: Event) => setRefusedOnly((e.target as HTMLInputElement).checked)} /> refusals only</label>
      <span class="muted small">${paused ? 'paused' : 'following'} · newest first · last ${keep} kept</span>
    </div>
    <${ErrorBox} error=${error} />
    <${AuditTable} entries=${shown} />
  </section>`;
}
