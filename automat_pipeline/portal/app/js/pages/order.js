// One order, following its job document live (GET /orders/{id} every 2 s while a line is unfinished):
// line states, progress, failure classes and reasons, outputs; submit, cancel, reject with a reason,
// resubmit, cancel a line, download the ZIP.
import { useState } from 'preact/hooks';
import { download, get, send, session } from '../api.js';
import { Badge, ErrorNotice, html, Page, useInterval, useLoad, when } from '../ui.js';

const LIVE = ['pending', 'queued', 'running'];
const names = new Map();

function productName(id) {
  if (!names.has(id)) names.set(id, get(`/products/${id}`).then((p) => p.pim_id, () => `product ${id}`));
  return names.get(id);
}

function ProductLink({ id }) {
  const name = useLoad(() => productName(id), [id]);
  return html`<a href=${`#/products/${id}`}>${name.data || `product ${id}`}</a>`;
}

export function OrderPage({ id }) {
  const order = useLoad(() => get(`/orders/${id}`), [id]);
  const [doc, setDoc] = useState(null);
  const [error, setError] = useState(null);
  const [reason, setReason] = useState('');
  const [rejecting, setRejecting] = useState(false);
  const current = doc || order.data;
  useInterval(() => get(`/orders/${id}`).then(setDoc, setError), 2000, current && LIVE.includes(current.state));
  if (order.error) return html`<${Page} title="Order"><${ErrorNotice} error=${order.error} /><p><a href="#/orders">Back to the orders</a></p></${Page}>`;
  if (!current) return html`<${Page} title="Order"><p role="status">Loading…</p></${Page}>`;
  const o = current;
  const act = (method, path, body) => send(method, path, body).then((next) => { setDoc(next); setError(null); }, setError);
  const own = o.created_by === session.userId;
  const finished = o.counts.succeeded + o.counts.failed + o.counts.cancelled;
  return html`<${Page} title=${`Order ${o.number}`}>
    <p><${Badge} value=${o.state} /> <span class="muted">status ${o.status}${o.workflow ? `, workflow ${o.workflow}` : ''}, created ${when(o.created_at)}</span></p>
    <p role="status" aria-live="polite" id="order-progress">
      <progress max=${o.counts.total || 1} value=${finished} aria-label="Lines finished"></progress>
      ${finished} of ${o.counts.total} lines finished: ${o.counts.succeeded} completed, ${o.counts.failed} failed, ${o.counts.cancelled} cancelled,
      ${o.counts.running} running, ${o.counts.queued} queued, ${o.counts.pending} pending.
    </p>
    ${o.reject_reason && html`<div class="notice error" role="alert"><strong>Rejected:</strong> ${o.reject_reason}</div>`}
    <${ErrorNotice} error=${error} />
    <div class="row">
      ${o.status === 'draft' && own && html`<button onClick=${() => act('POST', `/orders/${o.id}/submit`)}>Submit</button>`}
      ${o.status === 'submitted' && html`<button class="danger" onClick=${() => act('POST', `/orders/${o.id}/cancel`)}>Cancel the order</button>`}
      ${['rejected', 'cancelled'].includes(o.status) && own && html`<button onClick=${() => act('POST', `/orders/${o.id}/resubmit`)}>Back to draft, to submit again</button>`}
      ${session.can('reject_orders') && !['rejected', 'cancelled'].includes(o.status) && html`<button class="secondary" onClick=${() => setRejecting(!rejecting)} aria-expanded=${rejecting}>Reject…</button>`}
      ${o.counts.succeeded > 0 && html`<button class="secondary" onClick=${() => download(`/orders/${o.id}/download`, {}, `${o.number}.zip`).catch(setError)}>Download all files (ZIP)</button>`}
    </div>
    ${rejecting && html`<form class="field" onSubmit=${(e) => { e.preventDefault(); act('POST', `/orders/${o.id}/reject`, { reason }).then(() => setRejecting(false)); }}>
      <label for="reject-reason">Why is it rejected?</label>
      <span class="control"><textarea id="reject-reason" rows="3" cols="60" required value=${reason} aria-describedby="reject-help" onInput=${(e) => setReason(e.target.value)}></textarea></span>
      <small class="help" id="reject-help">The client sees this reason. Its unfinished work is cancelled.</small>
      <button type="submit" class="danger">Reject the order</button>
    </form>`}
    <h2>Lines (${o.lines.length})</h2>
    <table class="lines">
      <caption class="sr-only">The order's lines: product, output type, state, progress, failure, files</caption>
      <thead><tr><th scope="col">Product</th><th scope="col">Output type</th><th scope="col">State</th><th scope="col">Progress</th>
        <th scope="col">Failure</th><th scope="col">Files</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
      <tbody>${o.lines.map((line) => html`<tr key=${line.id} data-line=${line.id}>
        <td><${ProductLink} id=${line.product_id} /></td><td>${line.output_type}</td>
        <td><${Badge} value=${line.state} /></td>
        <td>${line.progress !== null ? html`<progress max="100" value=${line.progress} aria-label=${`Line ${line.id} progress`}></progress> ${line.progress}%` : '—'}</td>
        <td>${line.error_class ? html`<strong>${line.error_class}</strong>: ${line.reason}` : ''}
          ${line.launch_error ? html`<small class="help">Waiting to launch: ${line.launch_error}</small>` : ''}</td>
        <td>${line.outputs.map((out) => (out.file
          ? html`<button class="secondary" onClick=${() => download(out.file, {}, `${line.output_type}-${out.asset}`).catch(setError)}>${out.asset}<span class="sr-only"> of line ${line.id}</span></button> `
          : html`<span class="muted">${out.asset} (replaced by a later render)</span> `))}</td>
        <td>${o.status === 'draft' && own && html`<button class="link" onClick=${() => act('DELETE', `/orders/${o.id}/lines/${line.id}`)}>Remove<span class="sr-only"> line ${line.id}</span></button>`}
          ${o.status === 'submitted' && LIVE.includes(line.state) && html`<button class="link" onClick=${() => act('POST', `/orders/${o.id}/lines/${line.id}/cancel`)}>Cancel<span class="sr-only"> line ${line.id}</span></button>`}</td>
      </tr>`)}</tbody></table>
    ${o.history.length > 0 && html`<h2>History</h2><ul class="history">${o.history.map((h) => html`<li>
      ${when(h.at)}: ${h.event.replace('_', ' ')}${h.by_user ? ` by user ${h.by_user}` : ''}${h.reason ? ` — “${h.reason}”` : ''}</li>`)}</ul>`}
  </${Page}>`;
}
