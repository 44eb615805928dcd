// Workflows: the tenant's list, and the graph editor (Drawflow): steps from the step catalogue as
// nodes with parameter forms built from their schemas (help texts shown), edges drawn by dragging
// from a node's right handle to another's left one (or chosen in the panel, for the keyboard), live
// validation (POST /workflows/validate) that marks the node or edge each error names, save, a dry
// run for a product, and a run.
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, get, send, session } from '../api.js';
import { ErrorNotice, html, Notice, Page, useLoad } from '../ui.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function loadDrawflow() {
  if (!document.querySelector('link[data-drawflow]')) {
    document.head.append(Object.assign(document.createElement('link'), { rel: 'stylesheet', href: '/portal/vendor/drawflow.css' }));
    document.head.lastChild.dataset.drawflow = '';
  }
  return import('/portal/vendor/drawflow.mjs').then(() => window.Drawflow);
}

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The node's inside: its title, its parameters as inputs with their help texts, its errors. */
function nodeHtml(node, step) {
  const properties = step?.parameters?.properties || {};
  const fields = Object.entries(properties).map(([name, p]) => {
    const id = `param-${node.id}-${name}`;
    const value = node.params[name];
    const text = Array.isArray(value) ? value.join(', ') : value ?? '';
    return `<div class="field"><label for="${escape(id)}">${escape(name.replace(/_/g, ' '))}</label>
      <input id="${escape(id)}" data-param="${escape(name)}" data-array="${p.type === 'array'}" value="${escape(text)}"
        aria-describedby="${escape(id)}-help" ${p.type === 'array' ? 'placeholder="comma-separated"' : ''}>
      <small class="help" id="${escape(id)}-help">${escape(p.description || '')}</small></div>`;
  }).join('');
  return `<div class="node-title"><span>${escape(node.id)}</span>
      <button type="button" class="link" data-remove aria-label="Remove node ${escape(node.id)}">remove</button></div>
    <div class="muted">step ${escape(node.step)}</div>
    <div class="node-form">${fields || '<small class="help">No parameters.</small>'}</div>
    <ul class="node-errors" data-errors></ul>`;
}

/** Each error's node id or edge (the API names them: "node 'x': …", "edge a→b: …"). */
function targets(errors) {
  const nodes = new Map();
  const edges = new Map();
  const general = [];
  for (const error of errors) {
    const node = /^node '([^']+)'/.exec(error);
    const edge = /^edge ([^→]+)→([^:]+):/.exec(error);
    if (node) nodes.set(node[1], [...(nodes.get(node[1]) || []), error]);
    else if (edge) edges.set(`${edge[1]}→${edge[2]}`, [...(edges.get(`${edge[1]}→${edge[2]}`) || []), error]);
    else general.push(error);
  }
  return { nodes, edges, general };
}

function layout(document) {
  const depth = new Map(document.nodes.map((n) => [n.id, 0]));
  for (let round = 0; round < document.nodes.length; round += 1) {
    for (const e of document.edges) depth.set(e.to, Math.max(depth.get(e.to) || 0, (depth.get(e.from) || 0) + 1));
  }
  const rows = new Map();
  return new Map(document.nodes.map((n) => {
    const column = depth.get(n.id) || 0;
    const row = rows.get(column) || 0;
    rows.set(column, row + 1);
    return [n.id, { x: 30 + column * 270, y: 20 + row * 190 }];
  }));
}

function Editor({ name, isNew }) {
  const steps = useLoad(() => get('/workflows/steps'), []);
  const saved = useLoad(() => (isNew ? Promise.resolve(null) : get(`/workflows/${encodeURIComponent(name)}`)), [name]);
  const products = useLoad(() => get('/products', { limit: 200 }), []);
  const canvas = useRef(null);
  const editor = useRef(null);
  const [document_, setDocument] = useState({ version: 1, nodes: [], edges: [] });
  const [validation, setValidation] = useState(null);
  const [dirty, setDirty] = useState(false);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [product, setProduct] = useState('');
  const [link, setLink] = useState({ from: '', to: '' });
  const catalogue = new Map((steps.data || []).map((s) => [s.step, s]));

  const current = () => {
    const data = editor.current.export().drawflow.Home.data;
    const nodes = Object.values(data).map((n) => ({ id: n.data.id, step: n.data.step, params: n.data.params || {} }));
    const edges = [];
    for (const n of Object.values(data)) {
      for (const output of Object.values(n.outputs)) {
        for (const c of output.connections) edges.push({ from: n.data.id, to: data[c.node].data.id });
      }
    }
    return { version: 1, nodes, edges };
  };
  const dfId = (id) => Object.values(editor.current.export().drawflow.Home.data).find((n) => n.data.id === id)?.id;

  const mark = (errors) => {
    const found = targets(errors);
    const root = canvas.current;
    for (const element of root.querySelectorAll('.drawflow-node')) {
      const ours = editor.current.getNodeFromId(element.id.replace('node-', '')).data.id;
      const mine = found.nodes.get(ours) || [];
      element.classList.toggle('invalid', mine.length > 0);
      element.querySelector('[data-errors]').innerHTML = mine.map((e) => `<li>${escape(e.replace(/^node '[^']+': /, ''))}</li>`).join('');
    }
    for (const path of root.querySelectorAll('.connection')) {
      const classes = [...path.classList];
      const into = classes.find((c) => c.startsWith('node_in_node-'))?.replace('node_in_node-', '');
      const out = classes.find((c) => c.startsWith('node_out_node-'))?.replace('node_out_node-', '');
      const key = into && out ? `${editor.current.getNodeFromId(out).data.id}→${editor.current.getNodeFromId(into).data.id}` : '';
      path.classList.toggle('invalid', found.edges.has(key));
    }
  };

  const timer = useRef(null);
  const changed = () => {
    setDirty(true);
    const next = current();
    setDocument(next);
    clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      send('POST', '/workflows/validate', next).then((answer) => { setValidation(answer); mark(answer.errors); }, setError);
    }, 250);
  };

  const addNode = (node, x, y) => {
    const step = catalogue.get(node.step);
    const hasInput = step ? step.upstream.length > 0 : true;
    const hasOutput = step ? step.downstream.length > 0 : true;
    return editor.current.addNode(node.step, hasInput ? 1 : 0, hasOutput ? 1 : 0, x, y, `step-${node.step}`,
      { id: node.id, step: node.step, params: node.params || {} }, nodeHtml(node, step));
  };

  useEffect(() => {
    if (!steps.data || saved.loading || !canvas.current) return undefined;
    let live = true;
    loadDrawflow().then((Drawflow) => {
      if (!live) return;
      const flow = new Drawflow(canvas.current);
      flow.reroute = false;
      flow.start();
      editor.current = flow;
      const initial = saved.data?.document || { version: 1, nodes: [], edges: [] };
      const places = layout(initial);
      const ids = new Map(initial.nodes.map((n) => [n.id, addNode(n, places.get(n.id).x, places.get(n.id).y)]));
      for (const e of initial.edges) {
        if (ids.has(e.from) && ids.has(e.to)) flow.addConnection(ids.get(e.from), ids.get(e.to), 'output_1', 'input_1');
      }
      for (const event of ['connectionCreated', 'connectionRemoved', 'nodeRemoved', 'nodeCreated']) flow.on(event, changed);
      canvas.current.addEventListener('input', (event) => {
        const field = event.target.closest('[data-param]');
        if (!field) return;
        const id = event.target.closest('.drawflow-node').id.replace('node-', '');
        const node = flow.getNodeFromId(id);
        const raw = field.value;
        const value = field.dataset.array === 'true' ? raw.split(',').map((s) => s.trim()).filter(Boolean) : raw;
        const params = { ...node.data.params };
        if (value === '' || (Array.isArray(value) && !value.length)) delete params[field.dataset.param];
        else params[field.dataset.param] = value;
        flow.updateNodeDataFromId(id, { ...node.data, params });
        changed();
      });
      canvas.current.addEventListener('click', (event) => {
        if (!event.target.closest('[data-remove]')) return;
        flow.removeNodeId(event.target.closest('.drawflow-node').id);
      });
      changed();
      setDirty(isNew);
    });
    return () => { live = false; };
  }, [steps.data, saved.loading]);

  const add = (step) => {
    const taken = new Set(document_.nodes.map((n) => n.id));
    let id = step.step;
    for (let n = 2; taken.has(id); n += 1) id = `${step.step}-${n}`;
    addNode({ id, step: step.step, params: {} }, 40 + (document_.nodes.length % 4) * 250, 30 + Math.floor(document_.nodes.length / 4) * 200);
  };
  const connect = (event) => {
    event.preventDefault();
    const from = dfId(link.from);
    const to = dfId(link.to);
    if (from && to) editor.current.addConnection(from, to, 'output_1', 'input_1');
  };
  const show = (caught) => {
    setResult(null);
    setError(caught);
    if (caught instanceof ApiError && caught.status === 422 && Array.isArray(caught.detail) && caught.detail.every((d) => typeof d === 'string')) mark(caught.detail);
  };
  const save = () => send('PUT', `/workflows/${encodeURIComponent(name)}`, document_).then((answer) => {
    setDirty(false); setError(null); setResult({ kind: 'saved', text: `Saved as revision ${answer.revision}.` });
    if (isNew) window.history.replaceState(null, '', `#/workflows/${encodeURIComponent(name)}`);
  }, show);
  const plan = () => send('POST', `/workflows/${encodeURIComponent(name)}/plan`, product ? { product_id: Number(product) } : {}).then((answer) => {
    setError(null); setResult({ kind: 'plan', text: `A run would make ${answer.selection.join(', ')}`, detail: answer.run_config });
  }, show);
  const run = () => send('POST', `/workflows/${encodeURIComponent(name)}/runs`, { product_ids: [Number(product)] }).then((answer) => {
    setError(null); setResult({ kind: 'run', text: `Launched: ${Object.entries(answer.runs).map(([k, v]) => `${k} → run ${v}`).join('; ')}` });
  }, show);

  const found = targets(validation?.errors || []);
  const ids = document_.nodes.map((n) => n.id);
  return html`<${Page} title=${`Workflow ${name}`}>
    ${!session.can('settings') && html`<${Notice}>Tenant admins save workflows; you may build and check one, and the API will refuse to save it for your role.</${Notice}>`}
    <${ErrorNotice} error=${steps.error || (saved.error?.status === 404 ? null : saved.error)} />
    <div class="editor">
      <div class="palette"><h2>Steps</h2><p class="help">Add a step, then drag from a node's right handle to another's left handle to wire them.</p>
        <ul>${(steps.data || []).map((s) => html`<li><button class="secondary" onClick=${() => add(s)}
          title=${`reads ${s.upstream.join(', ') || 'nothing'}; feeds ${s.downstream.join(', ') || 'nothing'}`}>Add ${s.step}</button>
          <small class="help">${s.partitions === 'tenants' ? 'per tenant' : 'per product'}${s.upstream.length ? `; after ${s.upstream.join(', ')}` : ''}</small></li>`)}</ul></div>
      <div>
        <div class="row"><button class="secondary" onClick=${() => editor.current?.zoom_in()}>Zoom in</button>
          <button class="secondary" onClick=${() => editor.current?.zoom_out()}>Zoom out</button>
          <button class="secondary" onClick=${() => editor.current?.zoom_reset()}>Reset zoom</button></div>
        <div id="drawflow" ref=${canvas} role="application" aria-label="Workflow graph: nodes are steps, lines are edges"></div>
      </div>
      <div class="panel">
        <h2>Check</h2>
        <div id="validation" role="status" aria-live="polite">
          ${validation === null ? 'Not checked yet.' : validation.valid
            ? html`<p class="notice good"><strong>Valid:</strong> ${document_.nodes.length} steps, ${document_.edges.length} edges.</p>`
            : html`<div class="notice error"><strong>${validation.errors.length} problem${validation.errors.length > 1 ? 's' : ''}:</strong>
              <ul class="errors">${validation.errors.map((e) => html`<li>${e}</li>`)}</ul></div>`}
        </div>
        <h2>Edges</h2>
        <form class="row" onSubmit=${connect} aria-label="Add an edge">
          <div class="field"><label for="edge-from">From</label><span class="control"><select id="edge-from" onChange=${(e) => setLink({ ...link, from: e.target.value })}>
            <option value="">…</option>${ids.map((id) => html`<option value=${id} selected=${link.from === id}>${id}</option>`)}</select></span></div>
          <div class="field"><label for="edge-to">To</label><span class="control"><select id="edge-to" onChange=${(e) => setLink({ ...link, to: e.target.value })}>
            <option value="">…</option>${ids.map((id) => html`<option value=${id} selected=${link.to === id}>${id}</option>`)}</select></span></div>
          <button type="submit" class="secondary">Connect</button>
        </form>
        <ul class="edges">${document_.edges.map((e) => html`<li class=${found.edges.has(`${e.from}→${e.to}`) ? 'invalid' : ''}>${e.from} → ${e.to}
          <button class="link" onClick=${() => editor.current.removeSingleConnection(dfId(e.from), dfId(e.to), 'output_1', 'input_1')}>remove<span class="sr-only"> edge ${e.from} to ${e.to}</span></button></li>`)}</ul>
        <h2>Save and run</h2>
        <p>${dirty ? 'Unsaved changes.' : 'Saved.'}</p>
        <button onClick=${save} disabled=${!validation?.valid}>Save</button>
        <div class="field"><label for="plan-product">Product</label>
          <span class="control"><select id="plan-product" aria-describedby="plan-product-help" onChange=${(e) => setProduct(e.target.value)}>
            <option value="">Choose a product…</option>
            ${(products.data?.items || []).map((p) => html`<option value=${p.id} selected=${String(p.id) === product}>${p.pim_id}</option>`)}
          </select></span>
          <small class="help" id="plan-product-help">The dry run checks that every step the workflow reads but does not make is already made for this product; the run makes its steps for it.</small></div>
        <div class="row"><button class="secondary" disabled=${dirty} onClick=${plan}>Dry run</button>
          <button disabled=${dirty || !product} onClick=${run}>Run for this product</button></div>
        ${dirty && html`<small class="help">Save first: the dry run and the run use the saved workflow.</small>`}
        <${ErrorNotice} error=${error} />
        ${result && html`<div class="notice good" role="status" id="workflow-result"><strong>${result.text}</strong>
          ${result.detail && html`<pre>${JSON.stringify(result.detail, null, 1)}</pre>`}</div>`}
      </div>
    </div>
  </${Page}>`;
}

export function WorkflowsPage({ name, params }) {
  const list = useLoad(() => get('/workflows'), []);
  const [typed, setTyped] = useState('');
  if (name) return html`<${Editor} key=${name} name=${name} isNew=${params.new === '1'} />`;
  const valid = NAME.test(typed);
  return html`<${Page} title="Workflows">
    <${ErrorNotice} error=${list.error} />
    <table><caption class="sr-only">The tenant's workflows</caption>
      <thead><tr><th scope="col">Workflow</th><th scope="col">Revision</th><th scope="col">Steps</th></tr></thead>
      <tbody>${(list.data || []).map((w) => html`<tr><td><a href=${`#/workflows/${encodeURIComponent(w.name)}`}>${w.name}</a></td>
        <td>${w.revision}</td><td>${w.document.nodes.map((n) => n.step).join(', ')}</td></tr>`)}</tbody></table>
    <h2>New workflow</h2>
    <form class="row" onSubmit=${(e) => { e.preventDefault(); if (valid) window.location.hash = `#/workflows/${encodeURIComponent(typed)}?new=1`; }}>
      <div class="field"><label for="new-name">Name</label><span class="control"><input id="new-name" value=${typed}
        aria-describedby="new-name-help" aria-invalid=${typed && !valid ? 'true' : undefined} onInput=${(e) => setTyped(e.target.value)} /></span>
        <small class="help" id="new-name-help">Unique in the tenant: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.</small></div>
      <button type="submit" disabled=${!valid}>Create</button>
    </form>
  </${Page}>`;
}
