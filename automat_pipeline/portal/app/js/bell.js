// The notifications bell: the unread count and the feed from GET /notifications, polled every 30 s.
// Assumed answer (the notifications issue builds it): {"unread": n, "items": [{"id", "message",
// "created_at", "read", "order_id"?}]} ("unread_count", "title"/"text", "at", "read_at" read too).
// While that endpoint answers 404 (not built here yet) the bell stays hidden, and is not asked again.
import { useEffect, useState } from 'preact/hooks';
import { ApiError, get } from './api.js';
import { html, useInterval, when } from './ui.js';

let absent = false;

function normal(body) {
  const items = Array.isArray(body) ? body : body.items || [];
  const unread = body.unread ?? body.unread_count ?? items.filter((n) => !(n.read || n.read_at)).length;
  return { unread, items };
}

export function Bell() {
  const [feed, setFeed] = useState(null);
  const [open, setOpen] = useState(false);
  const poll = () => {
    if (absent) return;
    get('/notifications', { limit: 20 }).then(
      (body) => setFeed(normal(body)),
      (error) => {
        if (error instanceof ApiError && error.status === 404) absent = true;
        setFeed(null);
      },
    );
  };
  useEffect(poll, []);
  useInterval(poll, 30_000, !absent);
  if (!feed) return null;
  return html`<div class="bell">
    <button class="secondary" aria-expanded=${open} aria-controls="feed" onClick=${() => setOpen(!open)}
      aria-label=${`Notifications, ${feed.unread} unread`}>Notifications<span class="count" aria-hidden="true">${feed.unread}</span></button>
    ${open && html`<div class="feed" id="feed" role="region" aria-label="Notifications">
      ${feed.items.length === 0 ? html`<p>No notifications.</p>` : html`<ul>
        ${feed.items.map((n) => html`<li class=${n.read || n.read_at ? '' : 'unread'}>
          ${n.order_id ? html`<a href=${`#/orders/${n.order_id}`}>${n.message || n.title || n.text}</a>` : n.message || n.title || n.text}
          <br /><small class="help">${when(n.created_at || n.at)}</small></li>`)}
      </ul>`}
    </div>`}
  </div>`;
}
