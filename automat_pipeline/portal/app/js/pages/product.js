// A product: its metadata, its media, an interactive 3D view of its GLB (Google's <model-viewer>)
// naming the part and its library material under the pointer, and the parts on the magenta fallback.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, describe, download, get, request } from '../api.js';
import { basket } from '../basket-store.js';
import { pickableByPart } from '../glb.js';
import { AuthImage, Badge, ErrorNotice, html, Page, useLoad, when } from '../ui.js';

const VARIANTS = {
  glb_geometry: 'CAD colours (viewer GLB)',
  glb_production: 'Library materials (production GLB)',
};

function Viewer({ product, parts }) {
  const available = Object.keys(VARIANTS).filter((asset) =>
    product.media.some((m) => m.asset === asset && m.output_type === 'standard' && m.status === 'completed'));
  const [variant, setVariant] = useState(available[0]);
  const [model, setModel] = useState(null);
  const [error, setError] = useState(null);
  const [hover, setHover] = useState(null);
  const [size, setSize] = useState(null);
  const viewer = useRef(null);
  useEffect(() => {
    if (!variant) return undefined;
    let live = true;
    let url = null;
    setModel(null);
    setSize(null);
    const media = product.media.find((m) => m.asset === variant && m.output_type === 'standard');
    Promise.all([import('/portal/vendor/model-viewer.mjs'), request(`/media/${media.id}/file`).then((r) => r.arrayBuffer())])
      .then(([, buffer]) => {
        const pickable = pickableByPart(buffer);
        url = URL.createObjectURL(pickable.blob);
        if (live) setModel({ url, parts: pickable.parts });
      })
      .catch((caught) => live && setError(caught));
    return () => { live = false; if (url) URL.revokeObjectURL(url); };
  }, [variant]);
  useEffect(() => {
    const element = viewer.current;
    if (!element || !model) return undefined;
    const loaded = () => {
      const d = element.getDimensions();
      setSize(`${(d.x * 1000).toFixed(1)} × ${(d.y * 1000).toFixed(1)} × ${(d.z * 1000).toFixed(1)} mm`);
      element.dataset.loaded = 'true';
    };
    const failed = (event) => setError(new Error(`the 3D model could not be shown (${event.detail?.type || 'error'})`));
    element.addEventListener('load', loaded);
    element.addEventListener('error', failed);
    return () => { element.removeEventListener('load', loaded); element.removeEventListener('error', failed); };
  }, [model]);
  if (!available.length) return html`<p>No 3D model yet: the product's STEP file has not been converted.</p>`;
  const byName = new Map((parts || []).map((p) => [p.name, p]));
  const move = (event) => {
    const material = viewer.current?.materialFromPoint?.(event.clientX, event.clientY);
    const index = material && /^part:(\d+)$/.exec(material.name);
    if (!index) { setHover(null); return; }
    const name = model.parts[Number(index[1])];
    const box = viewer.current.getBoundingClientRect();
    setHover({ name, part: byName.get(name), x: event.clientX - box.left + 14, y: event.clientY - box.top + 14 });
  };
  return html`<section aria-labelledby="view-3d">
    <h2 id="view-3d">3D view</h2>
    <fieldset class="row"><legend>Model</legend>
      ${available.map((asset) => html`<label class="check"><input type="radio" name="variant" checked=${variant === asset}
        onChange=${() => setVariant(asset)} /> ${VARIANTS[asset]}</label>`)}
    </fieldset>
    <${ErrorNotice} error=${error instanceof ApiError ? error : null} />
    ${error && !(error instanceof ApiError) && html`<div class="notice error" role="alert">${describe(error)}</div>`}
    <div class="viewer-wrap" onPointerMove=${model ? move : undefined} onPointerLeave=${() => setHover(null)}>
      ${model ? html`<model-viewer ref=${viewer} src=${model.url} camera-controls="" interaction-prompt="none"
          shadow-intensity="0.6" exposure="1.1" alt=${`3D model of ${product.name}; drag to turn, scroll to zoom`}></model-viewer>`
        : html`<p role="status">Loading the 3D model…</p>`}
      ${hover && html`<div class="tooltip" role="status" style=${`left:${hover.x}px;top:${hover.y}px`}>
        <strong>${hover.name}</strong><br />
        ${hover.part ? html`${hover.part.material} (${hover.part.material_source})` : 'material unknown'}
      </div>`}
    </div>
    <p class="help">${size ? `Size ${size}. ` : ''}Point at a part to see its name and library material; the part list below has them all.</p>
  </section>`;
}

function Parts({ parts }) {
  if (parts.error?.status === 404) return html`<p>No part list yet (the CAD file has not been converted).</p>`;
  if (parts.error) return html`<${ErrorNotice} error=${parts.error} />`;
  if (!parts.data) return html`<p role="status">Loading the parts…</p>`;
  const fallback = parts.data.fallback_parts;
  return html`<section aria-labelledby="fallbacks">
      <h2 id="fallbacks">Parts on the magenta fallback material</h2>
      ${fallback.length ? html`<p>No rule resolved ${fallback.length === 1 ? "this part" : `these ${fallback.length} parts`}: ${fallback.length === 1 ? "it renders" : "they render"} magenta until the alias table or the catalogue names their material.</p>
        <ul class="fallback-parts">${fallback.map((name) => html`<li>${name}</li>`)}</ul>`
        : html`<p>None: every part resolved to a library material.</p>`}
    </section>
    <section aria-labelledby="parts">
      <h2 id="parts">Parts (${parts.data.parts.length})</h2>
      <table><caption class="sr-only">Parts with their CAD colour and library material</caption>
        <thead><tr><th scope="col">Part</th><th scope="col">CAD colour</th><th scope="col">Library material</th><th scope="col">Resolved by</th></tr></thead>
        <tbody>${parts.data.parts.map((p) => html`<tr class=${p.material_source === 'fallback' ? 'fallback' : ''}>
          <td>${p.name}</td>
          <td>${p.color ? html`<span class="swatch" style=${`background:${p.color}`} aria-hidden="true"></span>${p.color}` : '—'}</td>
          <td>${p.material || '—'}</td><td>${p.material_source || '—'}</td></tr>`)}
        </tbody></table>
    </section>`;
}

function MediaList({ media }) {
  const [error, setError] = useState(null);
  if (!media.length) return html`<p>No media yet.</p>`;
  return html`<${ErrorNotice} error=${error} /><table>
    <caption class="sr-only">Media of this product</caption>
    <thead><tr><th scope="col">Preview</th><th scope="col">Made by</th><th scope="col">Output type</th><th scope="col">Status</th><th scope="col">When</th><th scope="col">File</th></tr></thead>
    <tbody>${media.map((m) => html`<tr key=${m.id}>
      <td>${['thumbnail', 'still'].includes(m.asset) && m.status === 'completed'
        ? html`<${AuthImage} path=${`/media/${m.id}/file`} alt=${`${m.asset} ${m.output_type}`} width="64" height="64" className="mini" />` : ''}</td>
      <td>${m.asset}</td><td>${m.output_type}</td>
      <td><${Badge} value=${m.status} />${m.reason ? html`<br /><small>${m.error_class}: ${m.reason}</small>` : ''}</td>
      <td>${when(m.updated_at)}</td>
      <td>${m.status === 'completed' && html`<button class="secondary" onClick=${() => download(`/media/${m.id}/file`, {}, `${m.asset}-${m.output_type}`).catch(setError)}>
        Download<span class="sr-only"> ${m.asset} ${m.output_type}</span></button>`}</td>
    </tr>`)}</tbody></table>`;
}

export function ProductPage({ id }) {
  const product = useLoad(() => get(`/products/${id}`), [id]);
  const parts = useLoad(() => get(`/products/${id}/parts`), [id]);
  if (product.error) return html`<${Page} title="Product"><${ErrorNotice} error=${product.error} /><p><a href="#/products">Back to the products</a></p></${Page}>`;
  if (!product.data) return html`<${Page} title="Product"><p role="status">Loading…</p></${Page}>`;
  const p = product.data;
  return html`<${Page} title=${`${p.pim_id} · ${p.name}`}>
    <div class="columns">
      <div><${Viewer} product=${p} parts=${parts.data?.parts} /></div>
      <div>
        <h2>Product</h2>
        <dl class="facts">
          <dt>PIM-ID</dt><dd>${p.pim_id}</dd><dt>Name</dt><dd>${p.name}</dd>
          <dt>Category</dt><dd>${p.category_key || '—'}</dd><dt>Bearing type</dt><dd>${p.lagertyp || '—'}</dd>
          <dt>CAD converted</dt><dd>${p.has_cad ? 'yes' : 'no'}</dd>
        </dl>
        <button onClick=${() => basket.toggle(p)}>${basket.has(p.id) ? 'Remove from the basket' : 'Add to the basket'}</button>
      </div>
    </div>
    <${Parts} parts=${parts} />
    <h2>Media</h2>
    <${MediaList} media=${p.media} />
  </${Page}>`;
}
