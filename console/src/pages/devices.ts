import { html } from 'htm/preact';
import { useState } from 'preact/hooks';
import { type DevicePage, get, query, type SessionList } from '../api.ts';
import { Connected, ErrorBox, StatusBadge, when } from '../format.ts';
import { usePolled } from '../use-polled.ts';

interface Filters {
  readonly prefix: string;
  readonly status: string;
  readonly kind: string;
  readonly connectedOnly: boolean;
}

/** Devices and services, filtered by the API (prefix, status, kind) and by the live session list. */
export function DevicesPage() {
  const [filters, setFilters] = useState<Filters>({ prefix: '', status: '', kind: '', connectedOnly: false });
  const [pages, setPages] = useState<string[]>([]); // `after` cursors of the pages before this one
  const after = pages.at(-1);
  const { data, error } = usePolled(
    async () => {
      const [devices, sessions] = await Promise.all([
        get<DevicePage>(`/v1/devices${query({ prefix: filters.prefix.trim(), status: filters.status, kind: filters.kind, after, limit: 50 })}`),
        get<SessionList>('/v1/sessions'),
      ]);
      return { ...devices, connected: new Set(sessions.items.filter((s) => s.kind === 'device').map((s) => s.clientId)) };
    },
    3_000,
    [filters.prefix, filters.status, filters.kind, after],
  );
  const change = (patch: Partial<Filters>) => {
    setFilters({ ...filters, ...patch });
    setPages([]);
  };
  const rows = (data?.items ?? []).filter((d) => !filters.connectedOnly || data?.connected.has(d.id));

  return html`<section>
    <h1>Devices</h1>
    <form class="filters" role="search" onSubmit=${(e: Event) => e.preventDefault()}>
      <label>Id starts with <input type="search" name="prefix" value=${filters.prefix} onInput=${(e: Event) => change({ prefix: (e.target as HTMLInputElement).value })} /></label>
      <label
        >Status
        <select name="status" value=${filters.status} onChange=${(e: Event) => change({ status: (e.target as HTMLSelectElement).value })}>
          <option value="">any</option>
          <option value="active">active</option>
          <option value="suspended">suspended</option>
          <option value="revoked">revoked</option>
        </select></label
      >
      <label
        >Kind
        <select name="kind" value=${filters.kind} onChange=${(e: Event) => change({ kind: (e.target as HTMLSelectElement).value })}>
          <option value="">any</option>
          <option value="device">device</option>
          <option value="service">service</option>
        </select></label
      >
      <label class="check"><input type="checkbox" name="connected" checked=${filters.connectedOnly} onChange=${(e: Event) => change({ connectedOnly: (e.target as HTMLInputElement).checked })} /> connected only</label>
    </form>
    <${ErrorBox} error=${error} />
    <table class="list">
      <thead>
        <tr><th>id</th><th>kind</th><th>status</th><th>session</th><th>template</th><th>updated</th></tr>
      </thead>
      <tbody>
        ${rows.map(
          (d) => html`<tr data-device=${d.id}>
            <td><a href=${`#/devices/${encodeURIComponent(d.id)}`}>${d.id}</a></td>
            <td>${d.kind}</td>
            <td><${StatusBadge} status=${d.status} /></td>
            <td><${Connected} connected=${data?.connected.has(d.id) ?? false} /></td>
            <td>${d.template}</td>
            <td>${when(d.updatedAt)}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    ${data !== undefined && rows.length === 0 ? html`<p class="muted">No devices match.</p>` : null}
    <div class="pager">
      <button type="button" disabled=${pages.length === 0} onClick=${() => setPages(pages.slice(0, -1))}>Previous</button>
      <button type="button" disabled=${!data?.next} onClick=${() => data?.next && setPages([...pages, data.next])}>Next</button>
    </div>
  </section>`;
}
