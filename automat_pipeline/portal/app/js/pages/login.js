import { useState } from 'preact/hooks';
import { describe, login } from '../api.js';
import { html, Page } from '../ui.js';

export function LoginPage({ message }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(email, password);
      if (!window.location.hash || window.location.hash === '#/login') window.location.hash = '#/products';
    } catch (caught) {
      setError(caught.status === 401 ? 'Unknown e-mail address or wrong password.' : describe(caught));
    } finally {
      setBusy(false);
    }
  };
  return html`<${Page} title="Log in">
    ${message && html`<div class="notice" role="status">${message}</div>`}
    ${error && html`<div class="notice error" role="alert">${error}</div>`}
    <form onSubmit=${submit} class="login" aria-label="Log in">
      <div class="field"><label for="email">E-mail</label>
        <span class="control"><input id="email" type="email" autocomplete="username" required value=${email}
          onInput=${(e) => setEmail(e.target.value)} /></span></div>
      <div class="field"><label for="password">Password</label>
        <span class="control"><input id="password" type="password" autocomplete="current-password" required value=${password}
          onInput=${(e) => setPassword(e.target.value)} /></span></div>
      <button type="submit" disabled=${busy}>Log in</button>
    </form>
  </${Page}>`;
}
