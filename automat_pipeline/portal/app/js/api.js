// The portal's one way to the API: the session's tokens (refreshed once at a time: a refresh token
// is accepted once), the caller's tenant for a global admin, errors worded for people, files as blob
// URLs (an <img> cannot send a bearer token), downloads and uploads with progress.

const KEY = 'automat.session';
let state = JSON.parse(sessionStorage.getItem(KEY) || 'null');
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === 'string' ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

function claims(token) {
  try {
    return JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
  } catch {
    return {};
  }
}

export const session = {
  get signedIn() { return state !== null; },
  get role() { return state?.role; },
  get email() { return state?.email; },
  get userId() { return state ? Number(claims(state.access).sub) : null; },
  get tenant() { return state?.role === 'global_admin' ? state.actingTenant : state?.tenant_id; },
  get farewell() { return state === null ? lastFarewell : null; },
  can(permission) { return (MATRIX[permission] || []).includes(state?.role); },
  setTenant(id) { save({ ...state, actingTenant: id }); },
  subscribe(listener) { listeners.add(listener); return () => listeners.delete(listener); },
};

// security.MATRIX, for what the portal offers: the API decides, and says so when it refuses.
const MATRIX = {
  settings: ['global_admin', 'tenant_admin'],
  trigger_renders: ['global_admin', 'tenant_admin', 'project_manager'],
  view_all_orders: ['global_admin', 'tenant_admin', 'project_manager'],
  reject_orders: ['global_admin', 'tenant_admin', 'project_manager'],
  manage_tenants: ['global_admin'],
};

let lastFarewell = null;

function save(next) {
  state = next;
  if (next) sessionStorage.setItem(KEY, JSON.stringify(next));
  else sessionStorage.removeItem(KEY);
  listeners.forEach((listener) => listener());
}

/** Forget the session and go to the login page, saying why. */
export function signOut(why) {
  lastFarewell = why;
  blobs.forEach((url) => url.then((u) => URL.revokeObjectURL(u), () => {}));
  blobs.clear();
  save(null);
}

async function detailOf(response) {
  try {
    const body = await response.json();
    return body.detail ?? body;
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

export async function login(email, password) {
  const response = await fetch('/auth/login', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password }),
  });
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  const tokens = await response.json();
  lastFarewell = null;
  save({ access: tokens.access_token, refresh: tokens.refresh_token, role: tokens.role, tenant_id: tokens.tenant_id, email, actingTenant: null });
}

export async function logout() {
  try {
    await request('/auth/logout', { method: 'POST' });
  } finally {
    signOut('You are signed out.');
  }
}

let refreshing = null;

/** New tokens for the refresh token, one exchange at a time; {ok} or {ok: false, detail}. */
function refresh() {
  refreshing ??= (async () => {
    const response = await fetch('/auth/refresh', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refresh_token: state.refresh }),
    });
    if (!response.ok) return { ok: false, detail: await detailOf(response) };
    const tokens = await response.json();
    save({ ...state, access: tokens.access_token, refresh: tokens.refresh_token, role: tokens.role, tenant_id: tokens.tenant_id });
    return { ok: true };
  })().finally(() => { refreshing = null; });
  return refreshing;
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === '') continue;
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, item);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

function headers(extra) {
  const tenant = session.tenant;
  return { Authorization: `Bearer ${state.access}`, ...(state.role === 'global_admin' && tenant ? { 'X-Tenant-Id': String(tenant) } : {}), ...extra };
}

/** The API's answer to ``path`` (ok), or ApiError; a 401 the refresh token cannot mend signs out. */
export async function request(path, { method = 'GET', json, body, params, extra = {} } = {}) {
  if (!state) throw new ApiError(401, 'not signed in');
  if ((claims(state.access).exp || 0) * 1000 - Date.now() < 30_000) {
    const renewed = await refresh();
    if (!renewed.ok) { signOut(describe(new ApiError(401, renewed.detail))); throw new ApiError(401, renewed.detail); }
  }
  const send = () => fetch(path + query(params), {
    method,
    headers: headers(json !== undefined ? { 'Content-Type': 'application/json', ...extra } : extra),
    body: json !== undefined ? JSON.stringify(json) : body,
  });
  const used = state.access;
  let response = await send();
  if (response.status === 401 && state) {
    const renewed = state.access !== used ? { ok: true } : await refresh();
    if (!renewed.ok) { signOut(describe(new ApiError(401, renewed.detail))); throw new ApiError(401, renewed.detail); }
    response = await send();
  }
  if (response.status === 401) {
    const detail = await detailOf(response);
    signOut(describe(new ApiError(401, detail)));
    throw new ApiError(401, detail);
  }
  if (!response.ok) throw new ApiError(response.status, await detailOf(response));
  return response;
}

export async function get(path, params) {
  return (await request(path, { params })).json();
}

export async function send(method, path, json) {
  const response = await request(path, { method, json });
  return response.status === 204 ? null : response.json();
}

/** What a person should read for an error: what was refused and why, in the API's own words. */
export function describe(error) {
  if (!(error instanceof ApiError)) return `The portal could not reach the API: ${error.message}`;
  const detail = Array.isArray(error.detail)
    ? error.detail.map((d) => (typeof d === 'string' ? d : `${(d.loc || []).join('.')}: ${d.msg}`)).join('; ')
    : typeof error.detail === 'string' ? error.detail : JSON.stringify(error.detail);
  switch (error.status) {
    case 401: return `You are signed out: ${detail}. Please log in again.`;
    case 403: return `Not allowed for your role (${(state?.role || '').replace('_', ' ')}): the API answered “${detail}”.`;
    case 404: return `Not found: ${detail}. It is not in your tenant, or not yours to see.`;
    case 409: return `Not possible now: ${detail}.`;
    case 413: return `Too large: ${detail}.`;
    case 415: return `Not a file the portal takes: ${detail}.`;
    case 422: return `Please correct: ${detail}.`;
    case 429: return `Too many attempts: ${detail}. Wait a minute and try again.`;
    case 503: return `The pipeline (Dagster) does not answer, so nothing was launched: ${detail}. Try again once it is back.`;
    default: return `The API answered ${error.status}: ${detail}`;
  }
}

const blobs = new Map();

/** A blob: URL of a file the API serves (a thumbnail, a GLB), fetched once with the token. */
export function fileUrl(path) {
  if (!blobs.has(path)) {
    const url = request(path).then(async (response) => URL.createObjectURL(await response.blob()));
    url.catch(() => blobs.delete(path));
    blobs.set(path, url);
  }
  return blobs.get(path);
}

/** Save what ``request`` answered as a file, named as the API names it. */
export async function download(path, options = {}, fallback = 'download') {
  const response = await request(path, options);
  const named = /filename="?([^";]+)"?/.exec(response.headers.get('Content-Disposition') || '');
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement('a'), { href: url, download: named ? named[1] : fallback });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return named ? named[1] : fallback;
}

/** POST /uploads with progress (fetch reports none): resolves to the upload's record. */
export function upload(file, onProgress) {
  const attempt = () => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/uploads');
    for (const [key, value] of Object.entries(headers({}))) xhr.setRequestHeader(key, value);
    xhr.upload.onprogress = (event) => event.lengthComputable && onProgress(event.loaded / event.total);
    xhr.onload = () => {
      let body;
      try { body = JSON.parse(xhr.responseText); } catch { body = { detail: xhr.statusText }; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body.detail ?? body));
    };
    xhr.onerror = () => reject(new Error('the upload was interrupted'));
    const form = new FormData();
    form.append('file', file, file.name);
    xhr.send(form);
  });
  return attempt().catch(async (error) => {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    const renewed = await refresh();
    if (!renewed.ok) { signOut(describe(new ApiError(401, renewed.detail))); throw error; }
    return attempt();
  });
}

let openapi = null;

/** The API's OpenAPI document (public): the help texts of every setting and parameter. */
export function schema() {
  openapi ??= fetch('/openapi.json').then((r) => r.json());
  return openapi;
}

/** The description of a query parameter of an operation, from the OpenAPI document. */
export function parameterHelp(document, path, name, method = 'get') {
  const parameter = (document.paths[path]?.[method]?.parameters || []).find((p) => p.name === name);
  return parameter?.description || parameter?.schema?.description || '';
}
