// Tenant settings and output types (tenant admins): forms built from the OpenAPI schema, each field
// with its help text; the API validates and refuses (a client or project manager is told so).
import { useEffect, useState } from 'preact/hooks';
import { get, schema, send } from '../api.js';
import { fieldErrors, SchemaFields } from '../forms.js';
import { ErrorNotice, html, Notice, Page, useLoad } from '../ui.js';

function SchemaEditor({ title, component, value, save, prefix }) {
  const docs = useLoad(() => schema(), []);
  const [draft, setDraft] = useState(value);
  const [error, setError] = useState(null);
  const [saved, setSaved] = useState(false);
  useEffect(() => { setDraft(value); setError(null); setSaved(false); }, [value]);
  if (!docs.data) return html`<p role="status">Loading…</p>`;
  const submit = (event) => {
    event.preventDefault();
    setSaved(false);
    save(draft).then(() => { setError(null); setSaved(true); }, setError);
  };
  return html`<form onSubmit=${submit} aria-label=${title} novalidate>
    <${SchemaFields} schema=${docs.data.components.schemas[component]} root=${docs.data} value=${draft} onChange=${setDraft}
      prefix=${prefix} errors=${fieldErrors(error)} />
    <${ErrorNotice} error=${error} />
    ${saved && html`<${Notice} kind="good">Saved.</${Notice}>`}
    <button type="submit">Save ${title.toLowerCase()}</button>
  </form>`;
}

function OutputTypes() {
  const types = useLoad(() => get('/output-types'), []);
  const [name, setName] = useState('');
  if (types.error) return html`<${ErrorNotice} error=${types.error} />`;
  const chosen = (types.data || []).find((t) => t.name === name);
  return html`<div class="field"><label for="type-pick">Output type</label>
      <span class="control"><select id="type-pick" onChange=${(e) => setName(e.target.value)}>
        <option value="">Choose one to edit…</option>
        ${(types.data || []).map((t) => html`<option value=${t.name} selected=${t.name === name}>${t.name} (${t.kind})</option>`)}
      </select></span>
      <small class="help">A tenant's own output type overrides a shipped one of the same name.</small></div>
    ${chosen && html`<${SchemaEditor} title="Output type" component="OutputType" value=${chosen} prefix="ot"
      save=${(body) => send('PUT', `/output-types/${encodeURIComponent(chosen.name)}`, body).then(types.reload)} />`}`;
}

export function SettingsPage() {
  const settings = useLoad(() => get('/settings'), []);
  if (settings.error) {
    return html`<${Page} title="Settings"><${ErrorNotice} error=${settings.error} />
      <p>The tenant's settings and output types are for tenant admins. <a href="#/products">Back to the products</a></p></${Page}>`;
  }
  return html`<${Page} title="Settings">
    <h2>Tenant settings</h2>
    ${settings.data ? html`<${SchemaEditor} title="Settings" component="TenantSettings" value=${settings.data} prefix="ts"
      save=${(body) => send('PUT', '/settings', body)} />` : html`<p role="status">Loading…</p>`}
    <h2>Output types</h2>
    <${OutputTypes} />
  </${Page}>`;
}
