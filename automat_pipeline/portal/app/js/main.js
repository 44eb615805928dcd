// The portal's shell: hash routes to pages, the header (navigation by role, a global admin's tenant,
// the notifications bell, sign-out), focus moved to each page's heading as a screen reader expects.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { get, logout, schema, session } from './api.js';
import { basket } from './basket-store.js';
import { Bell } from './bell.js';
import { html, useLoad } from './ui.js';
import { LoginPage } from './pages/login.js';
import { ProductsPage } from './pages/products.js';
import { ProductPage } from './pages/product.js';
import { BasketPage } from './pages/basket.js';
import { OrdersPage } from './pages/orders.js';
import { OrderPage } from './pages/order.js';
import { MediaPage } from './pages/media.js';
import { UploadsPage } from './pages/uploads.js';
import { WorkflowsPage } from './pages/workflows.js';
import { SettingsPage } from './pages/settings.js';

const ROUTES = [
  [/^products$/, ProductsPage],
  [/^products\/(\d+)$/, ProductPage, 'id'],
  [/^basket$/, BasketPage],
  [/^orders$/, OrdersPage],
  [/^orders\/(\d+)$/, OrderPage, 'id'],
  [/^media$/, MediaPage],
  [/^uploads$/, UploadsPage],
  [/^uploads\/(\d+)$/, UploadsPage, 'id'],
  [/^workflows$/, WorkflowsPage],
  [/^workflows\/(.+)$/, WorkflowsPage, 'name'],
  [/^settings$/, SettingsPage],
];

const NAV = [
  ['products', 'Products'],
  ['basket', 'Basket'],
  ['orders', 'Orders'],
  ['media', 'Media'],
  ['uploads', 'Uploads'],
  ['workflows', 'Workflows', 'settings'],
  ['settings', 'Settings', 'settings'],
];

function location() {
  const [path, search = ''] = window.location.hash.replace(/^#\/?/, '').split('?');
  return { path: path || 'products', params: Object.fromEntries(new URLSearchParams(search)) };
}

function useRerender(subscribe) {
  const [, set] = useState(0);
  useEffect(() => subscribe(() => set((n) => n + 1)), []);
}

function TenantPicker() {
  const tenants = useLoad(() => get('/tenants'), []);
  return html`<label class="sr-only" for="tenant-pick">Tenant to act on</label>
    <select id="tenant-pick" onChange=${(e) => session.setTenant(e.target.value ? Number(e.target.value) : null)}>
      <option value="">Choose a tenant…</option>
      ${(tenants.data || []).map((t) => html`<option value=${t.id} selected=${session.tenant === t.id}>${t.name}</option>`)}
    </select>`;
}

function Header({ path }) {
  const section = path.split('/')[0];
  const items = NAV.filter(([, , needs]) => !needs || session.can(needs));
  return html`<header class="bar">
    <a class="skip" href="#page-title" onClick=${(e) => { e.preventDefault(); document.getElementById('page-title')?.focus(); }}>Skip to content</a>
    <span class="brand">Automat</span>
    <nav aria-label="Main"><ul>
      ${items.map(([target, label]) => html`<li><a href=${`#/${target}`} aria-current=${section === target ? 'page' : undefined}>
        ${label}${target === 'basket' && basket.size ? ` (${basket.size})` : ''}</a></li>`)}
    </ul></nav>
    <div class="who">
      ${session.role === 'global_admin' && html`<${TenantPicker} />`}
      <${Bell} />
      <span>${session.email} <span class="muted-on-dark">(${session.role.replace('_', ' ')})</span></span>
      <button class="secondary" onClick=${() => logout()}>Log out</button>
    </div>
  </header>`;
}

function App() {
  const [where, setWhere] = useState(location());
  useRerender(session.subscribe);
  useRerender(basket.subscribe);
  useEffect(() => {
    const moved = () => setWhere(location());
    window.addEventListener('hashchange', moved);
    return () => window.removeEventListener('hashchange', moved);
  }, []);
  useEffect(() => {
    if (where.path !== 'login' || !session.signedIn) document.getElementById('page-title')?.focus({ preventScroll: true });
  }, [where.path]);
  if (!session.signedIn) {
    return html`<header class="bar"><span class="brand">Automat</span></header>
      <main id="main"><${LoginPage} message=${session.farewell} /></main>`;
  }
  if (where.path === 'login') {
    window.location.hash = '#/products';
    return null;
  }
  const route = ROUTES.find(([pattern]) => pattern.test(where.path));
  let page = html`<h1 tabindex="-1" id="page-title">Not found</h1><p>The portal has no page “${where.path}”.</p>`;
  if (session.role === 'global_admin' && !session.tenant) {
    page = html`<h1 tabindex="-1" id="page-title">Choose a tenant</h1>
      <p>A global admin acts on one tenant at a time: choose it in the header.</p>`;
  } else if (route) {
    const [pattern, Component, key] = route;
    const match = pattern.exec(where.path);
    const props = { params: where.params, ...(key ? { [key]: decodeURIComponent(match[1]) } : {}) };
    page = html`<${Component} key=${`${where.path}|${session.tenant}`} ...${props} />`;
  }
  return html`<${Header} path=${where.path} /><main id="main">${page}</main>`;
}

schema(); // the help texts, asked for at once, beside the page's own requests
render(html`<${App} />`, document.getElementById('app'));
performance.mark('portal:rendered');
