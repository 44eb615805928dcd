// The basket: products picked for an order, kept in this tab's session storage until submitted.
const KEY = 'automat.basket';
const listeners = new Set();
let items = new Map(JSON.parse(sessionStorage.getItem(KEY) || '[]'));

function changed() {
  sessionStorage.setItem(KEY, JSON.stringify([...items]));
  listeners.forEach((listener) => listener());
}

export const basket = {
  get size() { return items.size; },
  get products() { return [...items.values()]; },
  has(id) { return items.has(id); },
  toggle(product) {
    if (items.has(product.id)) items.delete(product.id);
    else items.set(product.id, { id: product.id, pim_id: product.pim_id, name: product.name, has_cad: product.has_cad });
    changed();
  },
  remove(id) { items.delete(id); changed(); },
  clear() { items = new Map(); changed(); },
  subscribe(listener) { listeners.add(listener); return () => listeners.delete(listener); },
};
