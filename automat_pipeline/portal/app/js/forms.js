// Forms built from JSON schemas (the OpenAPI document's components, a step's parameters): every
// field shows its description, the API's help text, where it is edited.
import { html, describedBy } from './ui.js';

/** The schema behind $ref and Optional[...] (anyOf with null), its own description kept. */
export function resolve(schema, root) {
  if (!schema) return {};
  if (schema.$ref) {
    const [, where, name] = /^#\/(components\/schemas|\$defs)\/(.+)$/.exec(schema.$ref);
    const target = where === '$defs' ? root.$defs[name] : root.components.schemas[name];
    return { ...resolve(target, root), ...pick(schema) };
  }
  const options = schema.anyOf || schema.oneOf;
  if (options) {
    const real = options.filter((o) => o.type !== 'null');
    if (real.length === 1) return { ...resolve(real[0], root), ...pick(schema), nullable: real.length < options.length };
  }
  return schema;
}

function pick(schema) {
  const kept = {};
  for (const key of ['description', 'default', 'title']) if (schema[key] !== undefined) kept[key] = schema[key];
  return kept;
}

function humanize(name) {
  return name.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
}

/** A fieldset's worth of fields for ``schema``'s properties; ``errors``: dotted path → message. */
export function SchemaFields({ schema, root, value, onChange, prefix, errors = {}, path = [] }) {
  const resolved = resolve(schema, root);
  return Object.entries(resolved.properties || {}).map(([name, property]) => html`<${SchemaField}
    key=${name} name=${name} property=${property} root=${root} value=${(value || {})[name]}
    onChange=${(v) => onChange({ ...(value || {}), [name]: v })}
    prefix=${prefix} errors=${errors} path=${[...path, name]} />`);
}

function SchemaField({ name, property, root, value, onChange, prefix, errors, path }) {
  const p = resolve(property, root);
  const id = `${prefix}-${path.join('-')}`;
  const label = humanize(name);
  const help = p.description || '';
  const error = errors[path.join('.')];
  const describe = describedBy(id, help, error);
  const invalid = error ? 'true' : undefined;
  const field = (control) => html`<div class="field">
    <label for=${id}>${label}</label><span class="control">${control}</span>
    ${help && html`<small class="help" id=${`${id}-help`}>${help}</small>`}
    ${error && html`<small class="field-error" id=${`${id}-error`}>${error}</small>`}
  </div>`;
  if (p.type === 'object' && p.properties) {
    return html`<fieldset><legend>${label}</legend>
      ${help && html`<p class="help">${help}</p>`}
      <${SchemaFields} schema=${p} root=${root} value=${value} onChange=${onChange} prefix=${prefix} errors=${errors} path=${path} />
    </fieldset>`;
  }
  if (p.enum) {
    return field(html`<select id=${id} aria-describedby=${describe} aria-invalid=${invalid}
        onChange=${(e) => onChange(e.target.value === '' ? null : e.target.value)}>
      ${p.nullable && html`<option value="" selected=${value == null}>(none)</option>`}
      ${p.enum.map((option) => html`<option value=${option} selected=${value === option}>${option}</option>`)}
    </select>`);
  }
  if (p.type === 'boolean') {
    return html`<div class="field">
      <label class="check" for=${id}><input type="checkbox" id=${id} checked=${!!value} aria-describedby=${describe}
        onChange=${(e) => onChange(e.target.checked)} /> ${label}</label>
      ${help && html`<small class="help" id=${`${id}-help`}>${help}</small>`}
      ${error && html`<small class="field-error" id=${`${id}-error`}>${error}</small>`}
    </div>`;
  }
  if (p.type === 'integer' || p.type === 'number') {
    const min = p.minimum ?? p.exclusiveMinimum;
    const max = p.maximum ?? p.exclusiveMaximum;
    return field(html`<input type="number" id=${id} value=${value ?? ''} min=${min} max=${max}
      step=${p.type === 'integer' ? 1 : 'any'} aria-describedby=${describe} aria-invalid=${invalid}
      onInput=${(e) => onChange(e.target.value === '' ? null : Number(e.target.value))} />`);
  }
  if (p.type === 'array') {
    const items = resolve(p.items, root);
    if (items.enum) {
      const chosen = new Set(value || []);
      return html`<fieldset aria-describedby=${describe}><legend>${label}</legend>
        ${items.enum.map((option) => html`<label class="check"><input type="checkbox" checked=${chosen.has(option)}
          onChange=${(e) => onChange(items.enum.filter((o) => (o === option ? e.target.checked : chosen.has(o))))} /> ${option}</label>`)}
        ${help && html`<small class="help" id=${`${id}-help`}>${help}</small>`}
        ${error && html`<small class="field-error" id=${`${id}-error`}>${error}</small>`}
      </fieldset>`;
    }
    return field(html`<input type="text" id=${id} value=${(value || []).join(', ')} aria-describedby=${describe}
      aria-invalid=${invalid} placeholder="comma-separated"
      onChange=${(e) => onChange(e.target.value.split(',').map((s) => s.trim()).filter(Boolean))} />`);
  }
  if (p.type === 'object') {
    return field(html`<textarea id=${id} rows="3" cols="50" aria-describedby=${describe} aria-invalid=${invalid}
      onChange=${(e) => { try { onChange(JSON.parse(e.target.value || '{}')); } catch { /* kept until it parses */ } }}
    >${JSON.stringify(value ?? {}, null, 1)}</textarea>`);
  }
  return field(html`<input type="text" id=${id} value=${value ?? ''} aria-describedby=${describe} aria-invalid=${invalid}
    onInput=${(e) => onChange(e.target.value === '' && p.nullable ? null : e.target.value)} />`);
}

/** A 422's validation problems as dotted path → message (the body's own fields, without "body"). */
export function fieldErrors(error) {
  const found = {};
  if (Array.isArray(error?.detail)) {
    for (const problem of error.detail) {
      if (problem && problem.loc) found[problem.loc.filter((part) => part !== 'body').join('.')] = problem.msg;
    }
  }
  return found;
}
