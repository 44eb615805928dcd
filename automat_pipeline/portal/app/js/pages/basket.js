// The order basket: the picked products × the chosen output types (each with its settings and their
// help texts), the order's size against the tenant's rules and the engines it allows, then submit.
import { useState } from 'preact/hooks';
import { describe, get, schema, send } from '../api.js';
import { basket } from '../basket-store.js';
import { resolve } from '../forms.js';
import { ErrorNotice, html, Page, useLoad } from '../ui.js';

const SHOWN = ['kind', 'resolution', 'engine', 'samples', 'camera', 'frames', 'quality', 'glb_variant', 'transparent'];
const RENDERED = ['thumbnail', 'still', 'turntable'];

function TypeSettings({ type, fields }) {
  const shown = SHOWN.filter((name) => name in type && !(type.kind === 'glb' ? ['resolution', 'engine', 'samples', 'camera', 'frames', 'transparent'] : ['quality', 'glb_variant']).includes(name));
  return html`<dl class="facts">${shown.map((name) => html`<dt>${name.replace('_', ' ')}</dt>
    <dd>${String(type[name])}<small class="help">${fields[name]?.description || ''}</small></dd>`)}</dl>`;
}

export function BasketPage() {
  const types = useLoad(() => get('/output-types'), []);
  const rules = useLoad(() => get('/order-rules'), []);
  const flows = useLoad(() => get('/workflows'), []);
  const docs = useLoad(() => schema(), []);
  const [chosen, setChosen] = useState(new Set());
  const [workflow, setWorkflow] = useState('');
  const [progress, setProgress] = useState(null);
  const [error, setError] = useState(null);
  const [draft, setDraft] = useState(null);
  const products = basket.products;
  const fields = docs.data ? resolve(docs.data.components.schemas.OutputType, docs.data).properties : {};
  const workflowHelp = docs.data?.components.schemas.OrderIn?.properties.workflow.description || '';
  const picked = (types.data || []).filter((t) => chosen.has(t.name));
  const size = products.length * picked.length;
  const limits = rules.data;
  const refusedEngines = limits ? picked.filter((t) => RENDERED.includes(t.kind) && !limits.render_engines_allowed.includes(t.engine)) : [];
  const withoutCad = products.filter((p) => !p.has_cad);
  const problems = [
    ...(limits && size > limits.max_order_size ? [`${size} lines exceed this tenant's maximum of ${limits.max_order_size} per order.`] : []),
    ...refusedEngines.map((t) => `${t.name} renders with ${t.engine}, which this tenant does not allow.`),
    ...(withoutCad.length ? [`${withoutCad.map((p) => p.pim_id).join(', ')} ha${withoutCad.length > 1 ? 've' : 's'} no converted CAD file yet.`] : []),
  ];
  const toggle = (name) => {
    const next = new Set(chosen);
    if (next.has(name)) next.delete(name); else next.add(name);
    setChosen(next);
  };
  const submit = async () => {
    setError(null);
    try {
      setProgress('Creating the order…');
      const order = await send('POST', '/orders', workflow ? { workflow } : undefined);
      setDraft(order);
      let done = 0;
      for (const product of products) {
        for (const type of picked) {
          await send('POST', `/orders/${order.id}/lines`, { product_id: product.id, output_type: type.name });
          setProgress(`Adding lines: ${++done} of ${size}`);
        }
      }
      setProgress('Submitting…');
      await send('POST', `/orders/${order.id}/submit`);
      basket.clear();
      window.location.hash = `#/orders/${order.id}`;
    } catch (caught) {
      setError(caught);
      setProgress(null);
    }
  };
  return html`<${Page} title="Order basket">
    <${ErrorNotice} error=${types.error || rules.error} />
    ${products.length === 0 ? html`<p>The basket is empty: pick products on the <a href="#/products">products page</a>.</p>` : html`
      <h2>Products (${products.length})</h2>
      <ul>${products.map((p) => html`<li>${p.pim_id} · ${p.name}${p.has_cad ? '' : ' (no CAD yet)'}
        <button class="link" onClick=${() => basket.remove(p.id)}>Remove<span class="sr-only"> ${p.pim_id}</span></button></li>`)}</ul>
      <h2>Output types</h2>
      <div class="type-list">${(types.data || []).map((t) => html`<fieldset>
        <legend><label class="check"><input type="checkbox" checked=${chosen.has(t.name)} onChange=${() => toggle(t.name)} />
          ${t.name}</label></legend>
        <${TypeSettings} type=${t} fields=${fields} />
      </fieldset>`)}</div>
      <div class="field">
        <label for="workflow">Workflow</label>
        <span class="control"><select id="workflow" aria-describedby="workflow-help" onChange=${(e) => setWorkflow(e.target.value)}>
          <option value="">None: each line renders its output type alone</option>
          ${(flows.data || []).map((w) => html`<option value=${w.name} selected=${workflow === w.name}>${w.name} (revision ${w.revision})</option>`)}
        </select></span>
        <small class="help" id="workflow-help">${workflowHelp}</small>
      </div>
      <h2>Before you submit</h2>
      <dl class="facts" aria-label="Order size and rules">
        <dt>Order size</dt><dd id="order-size">${size} line${size === 1 ? '' : 's'} (${products.length} products × ${picked.length} output types)</dd>
        <dt>Most lines per order</dt><dd id="max-order-size">${limits ? limits.max_order_size : '…'}
          <small class="help">${docs.data?.components.schemas.OrderRules?.properties.max_order_size.description || ''}</small></dd>
        <dt>Engines allowed</dt><dd id="engines-allowed">${limits ? limits.render_engines_allowed.join(', ') : '…'}
          <small class="help">${docs.data?.components.schemas.OrderRules?.properties.render_engines_allowed.description || ''}</small></dd>
      </dl>
      ${problems.length > 0 && html`<div class="notice error" role="alert"><strong>The API would refuse this order:</strong>
        <ul>${problems.map((p) => html`<li>${p}</li>`)}</ul></div>`}
      ${error && html`<div class="notice error" role="alert"><strong>Not submitted.</strong> ${describe(error)}
        ${draft && html` The draft <a href=${`#/orders/${draft.id}`}>${draft.number}</a> keeps what was added.`}</div>`}
      ${progress && html`<p role="status">${progress}</p>`}
      <button onClick=${submit} disabled=${!size || progress !== null}>Submit the order (${size} lines)</button>
    `}
  </${Page}>`;
}
