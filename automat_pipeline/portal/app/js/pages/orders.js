// Orders: a client's own; for project managers and above the tenant's board (GET /orders: statuses,
// creator, number, keyset pages, counts per status).
import { useState } from 'preact/hooks';
import { get, parameterHelp, schema, session } from '../api.js';
import { Badge, ErrorNotice, html, Page, useLoad, when } from '../ui.js';

const STATUSES = ['draft', 'submitted', 'cancelled', 'rejected'];

export function OrdersPage() {
  const board = session.can('view_all_orders');
  const [statuses, setStatuses] = useState([]);
  const [mine, setMine] = useState(!board);
  const [number, setNumber] = useState('');
  const [typed, setTyped] = useState('');
  const [pages, setPages] = useState([]);
  const docs = useLoad(() => schema(), []);
  const filters = { status: statuses, created_by: mine && board ? session.userId : null, number: number || null, limit: 50 };
  const first = useLoad(() => get('/orders', filters), [JSON.stringify(filters)]);
  const more = async () => {
    const last = pages.length ? pages[pages.length - 1] : first.data;
    setPages([...pages, await get('/orders', { ...filters, cursor: last.next_cursor })]);
  };
  const help = (name) => (docs.data ? parameterHelp(docs.data, '/orders', name) : '');
  const items = [first.data, ...pages].filter(Boolean).flatMap((p) => p.items);
  const last = pages.length ? pages[pages.length - 1] : first.data;
  const toggle = (status) => { setPages([]); setStatuses(statuses.includes(status) ? statuses.filter((s) => s !== status) : [...statuses, status]); };
  return html`<${Page} title=${board ? 'Order board' : 'My orders'}>
    <div class="row">
      <fieldset aria-describedby="status-help"><legend>Status</legend>
        ${STATUSES.map((status) => html`<label class="check"><input type="checkbox" checked=${statuses.includes(status)} onChange=${() => toggle(status)} />
          ${status} (${first.data?.counts[status] ?? 0})</label>`)}
        <small class="help" id="status-help">${help('status')}</small>
      </fieldset>
      <form class="field" onSubmit=${(e) => { e.preventDefault(); setPages([]); setNumber(typed.trim()); }}>
        <label for="order-number">Order number</label>
        <span class="control"><input id="order-number" value=${typed} placeholder="ORD-2026-000042" aria-describedby="order-number-help"
          onInput=${(e) => setTyped(e.target.value)} /> <button type="submit">Find</button></span>
        <small class="help" id="order-number-help">${help('number')}</small>
      </form>
      ${board && html`<div class="field"><label class="check" for="mine"><input id="mine" type="checkbox" checked=${mine}
        onChange=${(e) => { setPages([]); setMine(e.target.checked); }} /> Only my orders</label>
        <small class="help">${help('created_by')}</small></div>`}
    </div>
    <${ErrorNotice} error=${first.error} />
    ${first.data && items.length === 0 && html`<p>No orders${statuses.length ? ' in these states' : ''}. <a href="#/products">Pick products</a> to order renders.</p>`}
    ${items.length > 0 && html`<table>
      <caption class="sr-only">Orders, newest first</caption>
      <thead><tr><th scope="col">Order</th><th scope="col">State</th><th scope="col">Lines done</th><th scope="col">Failed</th>
        <th scope="col">Created</th><th scope="col">Workflow</th>${board && html`<th scope="col">By user</th>`}</tr></thead>
      <tbody>${items.map((o) => html`<tr key=${o.id}>
        <td><a href=${`#/orders/${o.id}`}>${o.number}</a></td><td><${Badge} value=${o.state} /></td>
        <td>${o.counts.succeeded} of ${o.counts.total}</td><td>${o.counts.failed}</td>
        <td>${when(o.created_at)}</td><td>${o.workflow || '—'}</td>${board && html`<td>${o.created_by ?? '—'}</td>`}
      </tr>`)}</tbody></table>`}
    ${last?.next_cursor && html`<button class="secondary" onClick=${more}>Load more orders</button>`}
  </${Page}>`;
}
