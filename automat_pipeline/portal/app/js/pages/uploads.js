// Uploads: workbooks and STEP files dropped or chosen, sent with progress (POST /uploads), then
// followed until the pipeline has read them (GET /uploads/{id}): counts, rejected rows with reasons
// (a page at a time), the import report, each product's conversion.
import { useState } from 'preact/hooks';
import { describe, download, get, upload } from '../api.js';
import { Badge, ErrorNotice, html, Page, useInterval, useLoad } from '../ui.js';

const KEY = 'automat.uploads';
const ROWS = 50;
let sendings = 0;

function remembered() {
  return JSON.parse(sessionStorage.getItem(KEY) || '[]');
}

function Outcome({ id }) {
  const [offset, setOffset] = useState(0);
  const record = useLoad(() => get(`/uploads/${id}`, { rejected_offset: offset, rejected_limit: ROWS }), [id, offset]);
  const [error, setError] = useState(null);
  useInterval(record.reload, 2000, record.data?.status === 'received');
  if (record.error) return html`<${ErrorNotice} error=${record.error} />`;
  const u = record.data;
  if (!u) return html`<p role="status">Loading…</p>`;
  const imported = u.catalog_import;
  return html`<section class="outcome" aria-label=${`Outcome of ${u.filename}`}>
    <h3>${u.filename} <${Badge} value=${u.status} /></h3>
    ${u.status === 'received' && html`<p role="status">Received; waiting for the pipeline to read it…</p>`}
    ${u.error && html`<div class="notice error" role="alert"><strong>The whole file was refused:</strong> ${u.error}</div>`}
    <${ErrorNotice} error=${error} />
    ${imported && html`
      <dl class="facts">${Object.entries(imported.counts).map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}</dl>
      ${imported.report && html`<button class="secondary" onClick=${() => download(imported.report, {}, 'report.xlsx').catch(setError)}>Download the import report</button>`}
      ${imported.rejected_total > 0 && html`<h4>Rejected rows (${imported.rejected_total})</h4>
        <table class="rejected"><caption class="sr-only">Rejected rows with their reasons</caption>
          <thead><tr><th scope="col">Sheet</th><th scope="col">Row</th><th scope="col">Reason</th></tr></thead>
          <tbody>${imported.rejected.map((r) => html`<tr><td>${r.sheet}</td><td>${r.row}</td><td>${r.reason}</td></tr>`)}</tbody></table>
        ${imported.rejected_total > ROWS && html`<div class="pager">
          <button class="secondary" disabled=${offset === 0} onClick=${() => setOffset(Math.max(0, offset - ROWS))}>Previous rows</button>
          <button class="secondary" disabled=${offset + ROWS >= imported.rejected_total} onClick=${() => setOffset(offset + ROWS)}>Next rows</button></div>`}`}`}
    ${u.conversions && html`<table><caption>Conversion of each product that names this file</caption>
      <thead><tr><th scope="col">Product</th><th scope="col">Conversion</th><th scope="col">Why</th></tr></thead>
      <tbody>${u.conversions.map((c) => html`<tr><td><a href=${`#/products/${c.product_id}`}>${c.pim_id}</a></td>
        <td><${Badge} value=${c.status} /></td><td>${c.error_class ? `${c.error_class}: ${c.reason}` : ''}</td></tr>`)}</tbody></table>`}
  </section>`;
}

export function UploadsPage({ id }) {
  const [sent, setSent] = useState(remembered());
  const [sending, setSending] = useState([]);
  const [over, setOver] = useState(false);
  const send = (files) => {
    for (const file of files) {
      const key = ++sendings;
      setSending((list) => [...list, { key, name: file.name, progress: 0, error: null }]);
      const update = (change) => setSending((list) => list.map((e) => (e.key === key ? { ...e, ...change } : e)));
      upload(file, (share) => update({ progress: share })).then(
        (record) => {
          const next = [{ id: record.id, name: record.filename }, ...remembered()].slice(0, 50);
          sessionStorage.setItem(KEY, JSON.stringify(next));
          setSent(next);
          setSending((list) => list.filter((e) => e.key !== key));
        },
        (error) => update({ error }),
      );
    }
  };
  const drop = (event) => {
    event.preventDefault();
    setOver(false);
    send([...event.dataTransfer.files]);
  };
  if (id) {
    return html`<${Page} title="Upload"><p><a href="#/uploads">All uploads</a></p><${Outcome} id=${id} /></${Page}>`;
  }
  return html`<${Page} title="Uploads">
    <div class=${`dropzone${over ? ' over' : ''}`} onDragOver=${(e) => { e.preventDefault(); setOver(true); }}
      onDragLeave=${() => setOver(false)} onDrop=${drop} aria-describedby="drop-help">
      <p><strong>Drop product lists (.xlsx) and STEP files (.stp, .step) here</strong>, or</p>
      <label for="files" class="button">Choose files…</label>
      <input id="files" class="sr-only" type="file" multiple accept=".xlsx,.stp,.step" onChange=${(e) => { send([...e.target.files]); e.target.value = ''; }} />
      <small class="help" id="drop-help">Each file goes into your tenant's inbox; the pipeline imports the workbook's rows and converts the STEP files, and the outcome appears below.</small>
    </div>
    ${sending.length > 0 && html`<h2>Sending</h2><ul>${sending.map((e) => html`<li key=${e.key}>${e.name}
      <progress max="1" value=${e.progress} aria-label=${`Upload of ${e.name}`}></progress> ${Math.round(e.progress * 100)}%
      ${e.error && html`<div class="notice error" role="alert">${e.name}: ${describe(e.error)}</div>`}</li>`)}</ul>`}
    <h2>Your uploads</h2>
    ${sent.length === 0 ? html`<p>None in this session yet.</p>` : sent.map((u) => html`<${Outcome} key=${u.id} id=${u.id} />`)}
  </${Page}>`;
}
