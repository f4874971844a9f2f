// Vitrine storefront kit v1, core: configuration, the customer's identity, the API,
// events with their attribution, and the product cards (see vitrine.js).

export const VERSION = "1";

export const config = {
  api: new URL(import.meta.url).origin, // the Vitrine server the kit came from
  key: "",
  userId: null, // the signed-in customer; else an anonymous id kept in localStorage
  linkPattern: null, // "/products/{id}"; else the link the server's pattern gives
  locale: undefined, // for prices; the browser's by default
  lazyMargin: "200px", // how close to the viewport a list starts loading
};

/** Set the kit's options (see `config` above); call before the elements scroll into view. */
export function configure(options) {
  Object.assign(config, options);
  if (config.api) config.api = String(config.api).replace(/\/+$/, "");
}

// -- identity --------------------------------------------------------------------------

function randomId(prefix) {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const memory = new Map(); // when storage is blocked (private modes, sandboxed frames)

function stored(storage, name, make) {
  try {
    let value = storage.getItem(name);
    if (!value) {
      value = make();
      storage.setItem(name, value);
    }
    return value;
  } catch {
    if (!memory.has(name)) memory.set(name, make());
    return memory.get(name);
  }
}

/** The current customer's id: the configured one, or an anonymous id of this browser. */
export function userId() {
  return config.userId || stored(localStorage, "vitrine-user", () => randomId("anon-"));
}

function sessionId() {
  return stored(sessionStorage, "vitrine-session", () => randomId("s-"));
}

// -- the API ---------------------------------------------------------------------------

export class VitrineError extends Error {
  constructor(status, detail) {
    super(detail || `Vitrine answered ${status}`);
    this.status = status;
  }
}

export async function call(path, { method = "GET", json, form, keepalive = false } = {}) {
  const headers = { "X-API-Key": config.key };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  const response = await fetch(config.api + path, {
    method, headers, body, keepalive, mode: "cors", credentials: "omit",
  });
  if (!response.ok) {
    let detail = "";
    try {
      detail = (await response.json()).detail;
    } catch {
      // not a problem document
    }
    throw new VitrineError(response.status, detail);
  }
  return response.json();
}

export const enc = encodeURIComponent;

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") q.append(name, String(value));
  }
  const text = q.toString();
  return text ? "?" + text : "";
}

/** Product cards (id, title, price, currency, image, link) of these ids, in order. */
export async function cards(ids) {
  if (!ids.length) return [];
  const q = new URLSearchParams();
  for (const id of ids.slice(0, 100)) q.append("id", id);
  return (await call("/v1/cards?" + q.toString())).cards;
}

// -- events ----------------------------------------------------------------------------

function attributionKey(productId) {
  return "vitrine-from:" + productId;
}

/** The recommendation that led to this product in this tab ({recommendation_id,
 * strategy}), if any. */
export function attribution(productId) {
  try {
    return JSON.parse(sessionStorage.getItem(attributionKey(productId)) || "null");
  } catch {
    return null;
  }
}

function remember(productId, from) {
  try {
    sessionStorage.setItem(attributionKey(productId), JSON.stringify(from));
  } catch {
    // storage blocked: the click itself is still attributed
  }
}

/** Send one event (view, click, add_to_cart, remove_from_cart) about a product; the
 * recommendation that led to the product is added by itself. Never throws. */
export function track(type, productId, extra = {}) {
  const from = attribution(productId) || {};
  const event = {
    user_id: userId(),
    product_id: productId,
    type,
    session_id: sessionId(),
    event_id: randomId("e-"),
    recommendation_id: from.recommendation_id,
    strategy: from.strategy,
    ...extra,
  };
  return call("/v1/events", { method: "POST", json: event, keepalive: true }).catch((err) => {
    console.warn("vitrine: event not sent:", err.message);
    return null;
  });
}

// -- rendering -------------------------------------------------------------------------

export const STYLE = `
:host {
  display: block;
  font-family: var(--vitrine-font, inherit);
  color: var(--vitrine-text, #1d1d1f);
  margin: var(--vitrine-margin, 0 0 2rem);
}
:host([hidden]) { display: none; }
h2 { font-size: var(--vitrine-heading-size, 1.25rem); margin: 0 0 .75rem; }
ul {
  list-style: none; margin: 0; padding: 0; display: grid; gap: var(--vitrine-gap, 16px);
  grid-template-columns: repeat(auto-fill, minmax(var(--vitrine-card-width, 170px), 1fr));
}
li {
  background: var(--vitrine-card-background, #fff);
  border: var(--vitrine-card-border, 1px solid #e3e3e6);
  border-radius: var(--vitrine-radius, 10px); overflow: hidden;
}
a, .card { display: flex; flex-direction: column; height: 100%; color: inherit;
  text-decoration: none; }
a:focus-visible { outline: var(--vitrine-focus, 3px solid #0b57d0); outline-offset: 2px; }
a:hover .title { text-decoration: underline; }
.photo {
  aspect-ratio: var(--vitrine-image-ratio, 3 / 4); width: 100%;
  object-fit: var(--vitrine-image-fit, contain);
  background: var(--vitrine-image-background, #f4f4f5); display: block;
}
.noimage { display: grid; place-items: center; color: var(--vitrine-muted, #5f5f66); }
.text { padding: .6rem .7rem .8rem; display: flex; flex-direction: column; gap: .3rem; }
.title { font-size: .92rem; line-height: 1.3; }
.price { font-weight: 600; color: var(--vitrine-price, inherit); }
.soldout { color: var(--vitrine-muted, #5f5f66); font-size: .85rem; }
.skeleton li { height: 280px; background: var(--vitrine-image-background, #f4f4f5); }
button {
  font: inherit; cursor: pointer; border-radius: var(--vitrine-radius, 10px);
  border: 1px solid var(--vitrine-accent, #0b57d0); padding: .55rem 1rem;
  background: var(--vitrine-accent, #0b57d0); color: var(--vitrine-accent-text, #fff);
}
button.secondary { background: transparent; color: var(--vitrine-accent, #0b57d0); }
button:focus-visible { outline: var(--vitrine-focus, 3px solid #0b57d0); outline-offset: 2px; }
.actions { display: flex; gap: .6rem; flex-wrap: wrap; align-items: center; }
.status { color: var(--vitrine-muted, #5f5f66); margin: .6rem 0; min-height: 1.2em; }
.status:empty { display: none; }
.scene { position: relative; display: inline-block; margin: .5rem 0 1rem;
  width: min(100%, var(--vitrine-scene-width, 360px)); }
.scene.small { width: min(100%, var(--vitrine-thumb-width, 140px)); }
.scene img { display: block; width: 100%; border-radius: var(--vitrine-radius, 10px); }
.box { position: absolute; border: 2px solid var(--vitrine-accent, #0b57d0); padding: 0;
  background: transparent; border-radius: 4px; }
.box[aria-pressed="true"] { border-width: 4px; background: rgba(11, 87, 208, .12); }
.objects { margin-bottom: 1rem; }
.objects button[aria-pressed="true"] { background: var(--vitrine-accent, #0b57d0);
  color: var(--vitrine-accent-text, #fff); }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; }
`;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function formatPrice(price, currency) {
  if (price === null || price === undefined) return "";
  try {
    return new Intl.NumberFormat(config.locale, { style: "currency", currency }).format(price);
  } catch {
    return `${price.toFixed(2)} ${currency || ""}`.trim();
  }
}

function productLink(card) {
  if (config.linkPattern) return config.linkPattern.replaceAll("{id}", enc(card.id));
  return card.link;
}

/** One card: a link (photo, title, price) that sends a click with the list's origin. */
export function renderCard(card, from) {
  const photo = card.image
    ? el("img", {
      class: "photo", part: "image", src: card.image, alt: card.title, loading: "lazy",
      decoding: "async",
    })
    : el("div", { class: "photo noimage", part: "image", text: "No photo" });
  const text = el(
    "span", { class: "text" },
    el("span", { class: "title", part: "title", text: card.title }),
    el("span", { class: "price", part: "price", text: formatPrice(card.price, card.currency) }),
    card.available ? null : el("span", { class: "soldout", text: "Sold out" }),
  );
  const href = productLink(card);
  const inner = href
    ? el("a", { href, part: "link", "data-product-id": card.id }, photo, text)
    : el("div", { class: "card" }, photo, text);
  if (href) {
    inner.addEventListener("click", () => {
      if (from.recommendation_id) remember(card.id, from);
      track("click", card.id);
    });
  }
  return el("li", { part: "card" }, inner);
}

export function skeleton(n) {
  const list = el("ul", { class: "skeleton", "aria-hidden": "true" });
  for (let i = 0; i < n; i++) list.append(el("li")); // the space the cards will take
  return list;
}
