// The media browser: GET /media's filters, pages loaded as the list scrolls (keyset cursor), select
// many, download them as one ZIP (POST /media/download).
import { useEffect, useRef, useState } from 'preact/hooks';
import { download, get, parameterHelp, schema } from '../api.js';
import { AuthImage, Badge, ErrorNotice, html, Page, useLoad, when } from '../ui.js';

const ASSETS = ['thumbnail', 'still', 'turntable', 'blend_export', 'glb_geometry', 'glb_production', 'glb_export'];
const STATUSES = ['completed', 'failed', 'cancelled'];
const IMAGES = ['thumbnail', 'still'];

export function MediaPage() {
  const docs = useLoad(() => schema(), []);
  const facets = useLoad(() => get('/products/facets'), []);
  const [filters, setFilters] = useState({ asset: '', status: '', category_key: '', lagertyp: '', q: '' });
  const [items, setItems] = useState([]);
  const [cursor, setCursor] = useState(undefined);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState(null);
  const [selected, setSelected] = useState(new Set());
  const [typed, setTyped] = useState('');
  const sentinel = useRef(null);
  const load = async (reset) => {
    setLoading(true);
    try {
      const page = await get('/media', { ...filters, limit: 50, cursor: reset ? undefined : cursor });
      setItems(reset ? page.items : [...items, ...page.items]);
      setCursor(page.next_cursor);
      setError(null);
    } catch (caught) {
      setError(caught);
    } finally {
      setLoading(false);
    }
  };
  useEffect(() => { setSelected(new Set()); load(true); }, [JSON.stringify(filters)]);
  useEffect(() => {
    if (!sentinel.current || !cursor) return undefined;
    const watcher = new IntersectionObserver((seen) => { if (seen[0].isIntersecting && !loading) load(false); });
    watcher.observe(sentinel.current);
    return () => watcher.disconnect();
  }, [cursor, loading]);
  const help = (name) => (docs.data ? parameterHelp(docs.data, '/media', name) : '');
  const set = (name, value) => setFilters({ ...filters, [name]: value });
  const select = (name, label, options) => html`<div class="field">
    <label for=${`m-${name}`}>${label}</label>
    <span class="control"><select id=${`m-${name}`} aria-describedby=${`m-${name}-help`} onChange=${(e) => set(name, e.target.value)}>
      <option value="">All</option>${options.map((o) => html`<option value=${o} selected=${filters[name] === o}>${o}</option>`)}
    </select></span><small class="help" id=${`m-${name}-help`}>${help(name)}</small></div>`;
  const toggle = (id) => {
    const next = new Set(selected);
    if (next.has(id)) next.delete(id); else next.add(id);
    setSelected(next);
  };
  const completed = items.filter((m) => m.status === 'completed');
  const zip = () => download('/media/download', { method: 'POST', json: { ids: [...selected] } }, 'media.zip').catch(setError);
  return html`<${Page} title="Media">
    <form class="row" role="search" aria-label="Filter media" onSubmit=${(e) => { e.preventDefault(); set('q', typed); }}>
      ${select('asset', 'Made by step', ASSETS)}
      ${select('status', 'Status', STATUSES)}
      ${select('category_key', 'Category', (facets.data?.category_key || []).map((f) => f.value))}
      ${select('lagertyp', 'Bearing type', (facets.data?.lagertyp || []).map((f) => f.value))}
      <div class="field"><label for="m-q">Product</label>
        <span class="control"><input id="m-q" type="search" value=${typed} aria-describedby="m-q-help" onInput=${(e) => setTyped(e.target.value)} />
        <button type="submit">Filter</button></span><small class="help" id="m-q-help">${help('q')}</small></div>
    </form>
    <div class="row">
      <button class="secondary" disabled=${!completed.length} onClick=${() => setSelected(new Set(completed.map((m) => m.id)))}>Select all ${completed.length} loaded files</button>
      <button class="secondary" disabled=${!selected.size} onClick=${() => setSelected(new Set())}>Clear the selection</button>
      <button disabled=${!selected.size} onClick=${zip}>Download ${selected.size} as ZIP</button>
    </div>
    <${ErrorNotice} error=${error} />
    <p role="status" aria-live="polite">${items.length} media shown${cursor ? ', more below' : ''}, ${selected.size} selected.</p>
    <ul class="media-list" aria-label="Media">${items.map((m) => html`<li key=${m.id} class="media-item">
      <div class="preview">${IMAGES.includes(m.asset) && m.status === 'completed'
        ? html`<${AuthImage} path=${`/media/${m.id}/file`} alt=${`${m.asset} of product ${m.product_id}`} width="188" height="150" className="" />`
        : html`<span class="muted">${m.asset}</span>`}</div>
      <label class="check"><input type="checkbox" disabled=${m.status !== 'completed'} checked=${selected.has(m.id)} onChange=${() => toggle(m.id)} />
        <span>${m.asset} · ${m.output_type}<span class="sr-only"> (media ${m.id})</span></span></label>
      <div><a href=${`#/products/${m.product_id}`}>product ${m.product_id}</a> <${Badge} value=${m.status} /></div>
      <small class="help">${m.reason ? `${m.error_class}: ${m.reason}` : when(m.updated_at)}</small>
    </li>`)}</ul>
    <div ref=${sentinel} aria-hidden="true" style="height:1px"></div>
    ${cursor && html`<button class="secondary" disabled=${loading} onClick=${() => load(false)}>Load more media</button>`}
  </${Page}>`;
}
