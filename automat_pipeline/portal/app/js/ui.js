// Small pieces every page uses: htm over Preact, loading state, notices, badges, fields with help.
import { h } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import { describe, fileUrl } from './api.js';

export const html = htm.bind(h);

/** {data, error, loading, reload} of ``load()``, run again when ``deps`` change. */
export function useLoad(load, deps) {
  const [result, setResult] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const run = useCallback(() => {
    const mine = ++generation.current;
    setResult((r) => ({ ...r, loading: true }));
    load().then(
      (data) => mine === generation.current && setResult({ data, error: null, loading: false }),
      (error) => mine === generation.current && setResult({ data: null, error, loading: false }),
    );
  }, deps);
  useEffect(run, [run]);
  return { ...result, reload: run };
}

/** Call ``tick`` every ``ms`` while ``active``. */
export function useInterval(tick, ms, active) {
  const saved = useRef(tick);
  saved.current = tick;
  useEffect(() => {
    if (!active) return undefined;
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, [ms, active]);
}

export function ErrorNotice({ error }) {
  if (!error) return null;
  return html`<div class="notice error" role="alert"><strong>${title(error)}</strong> ${describe(error)}</div>`;
}

function title(error) {
  return { 401: 'Signed out.', 403: 'Refused.', 404: 'Not found.', 503: 'Pipeline unavailable.' }[error.status] || 'Error.';
}

export function Notice({ children, kind = '' }) {
  return html`<div class=${`notice ${kind}`} role="status">${children}</div>`;
}

export function Badge({ value }) {
  return html`<span class=${`badge ${value}`}>${String(value).replace(/_/g, ' ')}</span>`;
}

/** A labelled control with its help text (the API's description), tied by aria-describedby. */
export function Field({ id, label, help, error, children }) {
  return html`<div class="field">
    <label for=${id}>${label}</label>
    <span class="control">${children}</span>
    ${help && html`<small class="help" id=${`${id}-help`}>${help}</small>`}
    ${error && html`<small class="field-error" id=${`${id}-error`}>${error}</small>`}
  </div>`;
}

export function describedBy(id, help, error) {
  return [help && `${id}-help`, error && `${id}-error`].filter(Boolean).join(' ') || undefined;
}

/** An image the API serves, fetched with the token; fixed size so nothing moves when it arrives. */
export function AuthImage({ path, alt, className, width, height }) {
  const [url, setUrl] = useState(null);
  useEffect(() => {
    let live = true;
    if (path) fileUrl(path).then((u) => live && setUrl(u), () => {});
    return () => { live = false; };
  }, [path]);
  if (!url) return html`<span class=${`${className} empty`} style=${`width:${width}px;height:${height}px`} role="img" aria-label=${alt}>${path ? 'loading…' : 'no image yet'}</span>`;
  return html`<img class=${className} src=${url} alt=${alt} width=${width} height=${height} />`;
}

export function when(value) {
  return value ? new Date(value).toLocaleString() : '—';
}

export function Page({ title: heading, children }) {
  useEffect(() => { document.title = `${heading} · Automat portal`; }, [heading]);
  return html`<h1 tabindex="-1" id="page-title">${heading}</h1>${children}`;
}
