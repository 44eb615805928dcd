// Products: search and filters (GET /products, GET /products/facets), a grid of fixed-size tiles
// with thumbnails, and picking products for the basket.
import { useState } from 'preact/hooks';
import { get, parameterHelp, schema } from '../api.js';
import { basket } from '../basket-store.js';
import { AuthImage, ErrorNotice, html, Page, useLoad } from '../ui.js';

const PAGE_SIZE = 100;

export function ProductsPage({ params }) {
  const [filters, setFilters] = useState({
    q: params.q || '', category_key: params.category_key || '', lagertyp: params.lagertyp || '', has_media: params.has_media || '',
  });
  const [offset, setOffset] = useState(Number(params.offset || 0));
  const [typed, setTyped] = useState(filters.q);
  const facets = useLoad(() => get('/products/facets'), []);
  const docs = useLoad(() => schema(), []);
  const page = useLoad(() => get('/products', { ...filters, limit: PAGE_SIZE, offset }), [JSON.stringify(filters), offset]);
  const help = (name) => (docs.data ? parameterHelp(docs.data, '/products', name) : '');
  const choose = (name, value) => { setFilters({ ...filters, [name]: value }); setOffset(0); };
  const total = page.data?.total ?? 0;
  const ready = page.data && docs.data && facets.data; // the form at its full height first: the grid never moves
  const select = (name, label, options) => html`<div class="field">
    <label for=${`f-${name}`}>${label}</label>
    <span class="control"><select id=${`f-${name}`} aria-describedby=${`f-${name}-help`} onChange=${(e) => choose(name, e.target.value)}>
      <option value="">All</option>
      ${options.map(([value, text]) => html`<option value=${value} selected=${filters[name] === value}>${text}</option>`)}
    </select></span>
    <small class="help" id=${`f-${name}-help`}>${help(name)}</small>
  </div>`;
  if (!docs.data || !facets.data) {
    return html`<${Page} title="Products"><${ErrorNotice} error=${facets.error} /><p role="status">Loading…</p></${Page}>`;
  }
  return html`<${Page} title="Products">
    <form class="row" role="search" aria-label="Search products" onSubmit=${(e) => { e.preventDefault(); choose('q', typed); }}>
      <div class="field">
        <label for="f-q">Search</label>
        <span class="control"><input id="f-q" type="search" value=${typed} aria-describedby="f-q-help" onInput=${(e) => setTyped(e.target.value)} />
        <button type="submit">Search</button></span>
        <small class="help" id="f-q-help">${help('q')}</small>
      </div>
      ${select('category_key', 'Category', (facets.data?.category_key || []).map((f) => [f.value, `${f.value} (${f.count})`]))}
      ${select('lagertyp', 'Bearing type', (facets.data?.lagertyp || []).map((f) => [f.value, `${f.value} (${f.count})`]))}
      ${select('has_media', 'Media', [['true', 'With media'], ['false', 'Without media']])}
    </form>
    <${ErrorNotice} error=${page.error || facets.error} />
    <p role="status" aria-live="polite">${page.loading || !ready ? 'Searching…' : `${total} products${total > PAGE_SIZE ? `, ${offset + 1}–${Math.min(offset + PAGE_SIZE, total)} shown` : ''}`}
      ${basket.size ? html` · <a href="#/basket">${basket.size} in the basket</a>` : ''}</p>
    <ul class="grid" aria-label="Products">
      ${(ready ? page.data.items : []).map((p) => html`<li key=${p.id} class=${`tile${basket.has(p.id) ? ' selected' : ''}`}>
        <${AuthImage} className="thumb" path=${p.thumbnail ? `/media/${p.thumbnail}/file` : null} alt=${`Thumbnail of ${p.name}`} width="168" height="168" />
        <div class="meta">
          <a href=${`#/products/${p.id}`}>${p.pim_id}</a>
          <span class="name" title=${p.name}>${p.name}</span>
          <label class="pick"><input type="checkbox" checked=${basket.has(p.id)} onChange=${() => basket.toggle(p)} /> In basket<span class="sr-only"> (${p.pim_id})</span></label>
        </div>
      </li>`)}
    </ul>
    ${total > PAGE_SIZE && html`<div class="pager">
      <button class="secondary" disabled=${offset === 0} onClick=${() => setOffset(Math.max(0, offset - PAGE_SIZE))}>Previous page</button>
      <button class="secondary" disabled=${offset + PAGE_SIZE >= total} onClick=${() => setOffset(offset + PAGE_SIZE)}>Next page</button>
    </div>`}
  </${Page}>`;
}
