import { html } from 'htm/preact';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { ApiError, can, get, setToken, whenSignedOut, type Whoami } from './api.ts';
import { ErrorBox } from './format.ts';
import { AuditFeedPage } from './pages/audit-feed.ts';
import { CertificateAuthoritiesPage } from './pages/certificate-authorities.ts';
import { ChecksPage } from './pages/checks.ts';
import { ClaimsPage } from './pages/claims.ts';
import { DeviceDetailPage } from './pages/device-detail.ts';
import { DevicesPage } from './pages/devices.ts';
import { OverviewPage } from './pages/overview.ts';
import { RotationsPage } from './pages/rotations.ts';

/** Hash routes: the server serves one file, and a reload keeps the page (though not the token). */
function currentRoute(): string {
  return location.hash.replace(/^#/, '') || '/';
}

function useRoute(): string {
  const [route, setRoute] = useState(currentRoute());
  useEffect(() => {
    const onChange = () => setRoute(currentRoute());
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

function SignIn({ onSignedIn, reason }: { onSignedIn: (who: Whoami) => void; reason: string | undefined }) {
  const [value, setValue] = useState('');
  const [error, setError] = useState<unknown>(undefined);
  const submit = async (event: Event) => {
    event.preventDefault();
    setToken(value.trim());
    try {
      onSignedIn(await get<Whoami>('/v1/whoami'));
    } catch (caught) {
      setToken(undefined);
      setError(caught instanceof ApiError && caught.status === 401 ? new ApiError(401, caught.code, 'That token is not valid (or has been revoked).') : caught);
    }
  };
  return html`<main class="signin">
    <form class="panel" onSubmit=${submit} aria-label="Sign in">
      <h1>fleetgate</h1>
      <p class="muted">Sign in with an operator token: the bootstrap token in <code>data/admin.token</code>, or a personal <code>fgt_…</code> token from <code>fleetgate token create</code>.</p>
      <p class="muted small">The token stays in this tab's memory only; reloading or closing the tab signs you out.</p>
      ${reason ? html`<p class="notice">${reason}</p>` : null}
      <label>Operator token <input name="token" type="password" autocomplete="off" required value=${value} onInput=${(e: Event) => setValue((e.target as HTMLInputElement).value)} /></label>
      <button type="submit">Sign in</button>
      <${ErrorBox} error=${error} />
    </form>
  </main>`;
}

function Page({ route, who }: { route: string; who: Whoami }) {
  const device = /^\/devices\/(.+)$/.exec(route);
  if (!can.readFleet(who.role)) return html`<${ClaimsPage} role=${who.role} />`;
  if (device?.[1]) return html`<${DeviceDetailPage} id=${decodeURIComponent(device[1])} role=${who.role} key=${device[1]} />`;
  switch (route) {
    case '/devices':
      return html`<${DevicesPage} />`;
    case '/claims':
      return html`<${ClaimsPage} role=${who.role} />`;
    case '/audit':
      return html`<${AuditFeedPage} />`;
    case '/rotations':
      return html`<${RotationsPage} role=${who.role} />`;
    case '/checks':
      return html`<${ChecksPage} />`;
    case '/cas':
      return html`<${CertificateAuthoritiesPage} />`;
    default:
      return html`<${OverviewPage} />`;
  }
}

function App() {
  const [who, setWho] = useState<Whoami | undefined>(undefined);
  const [reason, setReason] = useState<string | undefined>(undefined);
  const route = useRoute();
  useEffect(() => {
    whenSignedOut(() => {
      setWho(undefined);
      setReason('The API no longer accepts that token; sign in again.');
    });
  }, []);
  if (who === undefined) return html`<${SignIn} reason=${reason} onSignedIn=${(w: Whoami) => setWho(w)} />`;

  const signOut = () => {
    setToken(undefined);
    setReason(undefined);
    setWho(undefined);
  };
  const link = (href: string, label: string) => {
    const active = href === '#/' ? route === '/' : route.startsWith(href.slice(1));
    return html`<a href=${href} class=${active ? 'active' : ''} aria-current=${active ? 'page' : undefined}>${label}</a>`;
  };
  return html`<div class="app">
    <header>
      <span class="brand">fleetgate</span>
      <nav>
        ${can.readFleet(who.role) ? [link('#/', 'Overview'), link('#/devices', 'Devices')] : null} ${link('#/claims', 'Claims & templates')}
        ${can.readFleet(who.role) ? [link('#/rotations', 'Rotations'), link('#/audit', 'Audit feed'), link('#/checks', 'Health checks'), link('#/cas', 'CAs')] : null}
      </nav>
      <span class="who" data-test="who">${who.name} · <strong>${who.role}</strong></span>
      <button type="button" class="small" onClick=${signOut}>Sign out</button>
    </header>
    <main><${Page} route=${route} who=${who} /></main>
  </div>`;
}

const root = document.getElementById('app');
if (root !== null) render(html`<${App} />`, root);
