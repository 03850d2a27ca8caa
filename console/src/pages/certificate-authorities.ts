import { html } from 'htm/preact';
import { type CertificateAuthority, type CertificateAuthorityList, get } from '../api.ts';
import { ErrorBox, when } from '../format.ts';
import { usePolled } from '../use-polled.ts';

const refreshMs = 30_000;
/** `next` and `retiring` are the two halves of a rotation in progress; `retired` is no longer trusted. */
/** Roots first, then what they sign, oldest first within a role (the API lists by creation). */
const roleOrder = { root: 0, cross: 1, device: 2, claim: 3, manufacturer: 4 } as const;
const badge = { active: 'badge-ok', next: 'badge-connected', retiring: 'badge-suspended', retired: 'badge-offline' } as const;

function roleOf(ca: CertificateAuthority): string {
  return ca.role === 'cross' ? `cross-certificate (${ca.crossOf} signed by ${ca.issuerId})` : ca.role;
}

const counted = (n: number, one: string, many: string) => (n > 0 ? [`${n} ${n === 1 ? one : many}`] : []);

function usageOf(ca: CertificateAuthority): string {
  const parts = [...counted(ca.usage.certificates, 'certificate', 'certificates'), ...counted(ca.usage.claims, 'claim', 'claims'), ...counted(ca.usage.authorities, 'CA', 'CAs')];
  return parts.length === 0 ? 'nothing' : parts.join(', ');
}

/**
 * The CAs and where their rotation stands (README "Rotating certificates and CAs"): GET /v1/pki/cas, the same
 * list as `fleetgate ca list`. Read-only: a rotation stage is a deliberate step taken with `fleetgate ca rotate`.
 */
export function CertificateAuthoritiesPage() {
  const { data, error, reload } = usePolled(() => get<CertificateAuthorityList>('/v1/pki/cas'), refreshMs, []);
  const items = [...(data?.items ?? [])].sort((a, b) => roleOrder[a.role] - roleOrder[b.role]);
  const rotating = items.filter((ca) => ca.state === 'next' || ca.state === 'retiring');
  return html`<section>
    <h1>Certificate authorities</h1>
    <div class="filters">
      <button type="button" onClick=${() => void reload()}>Refresh</button>
      ${data
        ? html`<span data-test="ca-summary">${rotating.length === 0 ? 'no rotation in progress' : `rotation in progress: ${rotating.map((ca) => `${ca.role} ${ca.id} ${ca.state}`).join(', ')}`}</span>`
        : html`<span class="muted">loading…</span>`}
    </div>
    <${ErrorBox} error=${error} />
    <table class="list">
      <thead><tr><th>id</th><th>role</th><th>state</th><th>valid until</th><th>still vouches for</th><th>subject</th></tr></thead>
      <tbody>
        ${items.map(
          (ca) => html`<tr key=${ca.id} data-test=${`ca-${ca.id}`}>
            <td><code>${ca.id}</code></td>
            <td>${roleOf(ca)}</td>
            <td><span class=${`badge ${badge[ca.state]}`}>${ca.state}</span></td>
            <td>${when(ca.notAfter)}</td>
            <td>${usageOf(ca)}</td>
            <td class="small">${ca.subject}</td>
          </tr>`,
        )}
      </tbody>
    </table>
    <p class="muted small">Rotate with <code>fleetgate ca rotate root|device|claim --stage prepare|activate|retire</code>; move devices with <code>fleetgate rotate start --select ca=ID</code>.</p>
  </section>`;
}
