// The notifications bell: the unread count and the feed of GET /notifications, polled every 30 s.
// Opening the feed marks what it shows as read (POST /notifications/read). An order's notifications
// carry its id in their data and link to its page.
import { useEffect, useState } from 'preact/hooks';
import { get, send } from './api.js';
import { html, useInterval, when } from './ui.js';

export function Bell() {
  const [feed, setFeed] = useState(null);
  const [open, setOpen] = useState(false);
  const poll = () => get('/notifications', { limit: 20 }).then(setFeed, () => setFeed(null));
  useEffect(() => { poll(); }, []);
  useInterval(poll, 30_000, true);
  const toggle = () => {
    const ids = feed.items.filter((n) => !n.read_at).map((n) => n.id);
    setOpen(!open);
    if (!open && ids.length) send('POST', '/notifications/read', { ids }).then(({ unread }) => setFeed({ ...feed, unread }));
  };
  if (!feed) return null;
  return html`<div class="bell">
    <button class="secondary" aria-expanded=${open} aria-controls="feed" onClick=${toggle}>Notifications <span
      class="count">${feed.unread}</span><span class="sr-only"> unread</span></button>
    ${open && html`<div class="feed" id="feed" role="region" aria-label="Notifications">
      ${feed.items.length === 0 ? html`<p>No notifications.</p>` : html`<ul>
        ${feed.items.map((n) => html`<li class=${n.read_at ? '' : 'unread'}>
          ${n.data?.order_id ? html`<a href=${`#/orders/${n.data.order_id}`}>${n.title}</a>` : n.title}
          ${n.body && html`<br /><span>${n.body}</span>`}
          <br /><small class="help">${when(n.created_at)}</small></li>`)}
      </ul>`}
    </div>`}
  </div>`;
}
