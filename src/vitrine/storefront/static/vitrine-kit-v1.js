// Vitrine storefront kit, version 1: web components that a shop pastes into its pages.
//
// Plain ES module, no build step, no framework. Import it from the Vitrine server, give
// it a storefront key, and place the elements:
//
//   <script type="module">
//     import { configure } from "https://vitrine.example/kit/v1/vitrine.js";
//     configure({ key: "vtr_...", userId: "customer-42", linkPattern: "/products/{id}" });
//   </script>
//   <vitrine-recommendations k="8"></vitrine-recommendations>
//
// Elements: <vitrine-recommendations strategy k>, <vitrine-similar product-id k>,
// <vitrine-complementary product-id k>, <vitrine-trending category k>,
// <vitrine-photo-search k>, <vitrine-product-view product-id> (sends the product's view).
// Lists load when they scroll into view; a click on a card sends a click event with the
// list's recommendation id and strategy, kept for the product's view and add-to-cart.
// Styled with CSS custom properties (--vitrine-*) and ::part(). See docs/storefront.md.

export const VERSION = "1";

const config = {
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

async function call(path, { method = "GET", json, form, keepalive = false } = {}) {
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

const enc = encodeURIComponent;

function query(params) {
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

const STYLE = `
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

function el(tag, attrs = {}, ...children) {
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
function renderCard(card, from) {
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

function skeleton(n) {
  const list = el("ul", { class: "skeleton", "aria-hidden": "true" });
  for (let i = 0; i < n; i++) list.append(el("li")); // the space the cards will take
  return list;
}

// -- lists -----------------------------------------------------------------------------

/** A list of product cards that loads when it scrolls into view. Subclasses say what
 * to fetch (`fetchList`: {items: [{product_id}], recommendation_id, strategy}). */
class VitrineList extends HTMLElement {
  static observedAttributes = ["k", "strategy", "product-id", "category", "heading"];
  static defaultHeading = "";

  constructor() {
    super();
    this.attachShadow({ mode: "open" });
    this.loaded = false;
    this.observer = null;
  }

  get k() {
    const k = Number.parseInt(this.getAttribute("k") || "8", 10);
    return Number.isFinite(k) && k > 0 ? Math.min(k, 100) : 8;
  }

  get heading() {
    return this.hasAttribute("heading")
      ? this.getAttribute("heading")
      : this.constructor.defaultHeading;
  }

  connectedCallback() {
    if (this.loaded || this.observer) return;
    this.shadowRoot.replaceChildren(el("style", { text: STYLE }), this.frame(skeleton(this.k)));
    this.setAttribute("aria-busy", "true");
    this.observer = new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) {
          this.observer.disconnect();
          this.observer = null;
          this.load();
        }
      },
      { rootMargin: config.lazyMargin },
    );
    this.observer.observe(this);
  }

  disconnectedCallback() {
    this.observer?.disconnect();
    this.observer = null;
  }

  attributeChangedCallback(_name, before, after) {
    if (this.loaded && before !== after) this.load();
  }

  frame(content) {
    const id = "vitrine-heading";
    const heading = this.heading;
    const section = el(
      "section",
      heading ? { part: "section", "aria-labelledby": id } : { part: "section" },
    );
    if (heading) section.append(el("h2", { id, part: "heading", text: heading }));
    section.append(content);
    return section;
  }

  async load() {
    this.loaded = true;
    this.setAttribute("aria-busy", "true");
    try {
      const list = await this.fetchList();
      const ids = list.items.map((item) => item.product_id);
      const found = await cards(ids);
      const from = { recommendation_id: list.recommendation_id, strategy: list.strategy };
      if (!found.length) {
        this.hidden = true;
      } else {
        this.hidden = false;
        const ul = el("ul", { part: "list", role: "list" });
        ul.append(...found.map((card) => renderCard(card, from)));
        this.shadowRoot.replaceChildren(el("style", { text: STYLE }), this.frame(ul));
      }
      this.dataset.recommendationId = list.recommendation_id || "";
      this.dataset.strategy = list.strategy || "";
      this.emit("vitrine-load", { ...from, products: found.map((c) => c.id) });
    } catch (err) {
      this.hidden = true; // a shop's page shows nothing rather than an error
      this.emit("vitrine-error", { status: err.status, message: err.message });
    } finally {
      this.removeAttribute("aria-busy");
    }
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  productId() {
    const id = this.getAttribute("product-id");
    if (!id) throw new VitrineError(0, `${this.localName} needs a product-id`);
    return id;
  }
}

class Recommendations extends VitrineList {
  static defaultHeading = "Recommended for you";

  fetchList() {
    const q = query({ k: this.k, strategy: this.getAttribute("strategy") });
    return call(`/v1/users/${enc(userId())}/recommendations${q}`);
  }
}

class Similar extends VitrineList {
  static defaultHeading = "Similar products";

  async fetchList() {
    const id = enc(this.productId());
    const q = query({ k: this.k, strategy: this.getAttribute("strategy") });
    try {
      return await call(`/v1/products/${id}/similar/weighted${q}`);
    } catch (err) {
      if (err.status !== 404 && err.status !== 503) throw err;
      // recommendations not trained yet, or a product newer than them: plain look-alikes
      const found = await call(`/v1/products/${id}/similar${query({ k: this.k })}`);
      return { items: found.results.map((r) => ({ product_id: r.product_id })) };
    }
  }
}

class Complementary extends VitrineList {
  static defaultHeading = "Complete the look";

  fetchList() {
    const q = query({ k: this.k, strategy: this.getAttribute("strategy") });
    return call(`/v1/products/${enc(this.productId())}/complementary${q}`);
  }
}

class Trending extends VitrineList {
  static defaultHeading = "Trending now";

  fetchList() {
    return call(`/v1/trending${query({ k: this.k, category: this.getAttribute("category") })}`);
  }
}

/** Sends the product page's view (with the recommendation that led here); shows nothing. */
class ProductView extends HTMLElement {
  connectedCallback() {
    const id = this.getAttribute("product-id");
    if (id && this.sent !== id) {
      this.sent = id;
      // after the importing script's configure() (elements upgrade during the import)
      setTimeout(() => track("view", id), 0);
    }
  }
}

// -- photo search ----------------------------------------------------------------------

/** A button that searches the catalog by a photo (the camera on phones, or a file):
 * every product found in the photo (shop the look) when the service has a trained
 * localiser, else products that look like the whole photo. */
class PhotoSearch extends HTMLElement {
  constructor() {
    super();
    this.attachShadow({ mode: "open" });
  }

  get k() {
    const k = Number.parseInt(this.getAttribute("k") || "8", 10);
    return Number.isFinite(k) && k > 0 ? Math.min(k, 50) : 8;
  }

  connectedCallback() {
    if (this.shadowRoot.childElementCount) return;
    const label = this.getAttribute("label") || "Search by photo";
    this.input = el("input", {
      type: "file", accept: "image/*", class: "visually-hidden", tabindex: "-1",
      "aria-hidden": "true",
    });
    this.camera = el("input", {
      type: "file", accept: "image/*", capture: "environment", class: "visually-hidden",
      tabindex: "-1", "aria-hidden": "true",
    });
    const choose = el("button", { type: "button", part: "button", text: label });
    choose.addEventListener("click", () => this.input.click());
    const actions = el("div", { class: "actions" }, choose);
    if (window.matchMedia?.("(pointer: coarse)").matches) {
      const shoot = el("button", {
        type: "button", part: "button", class: "secondary", text: "Take a photo",
      });
      shoot.addEventListener("click", () => this.camera.click());
      actions.append(shoot);
    }
    for (const input of [this.input, this.camera]) {
      input.addEventListener("change", () => {
        if (input.files?.[0]) this.search(input.files[0]);
        input.value = "";
      });
    }
    this.status = el("p", { class: "status", role: "status", "aria-live": "polite" });
    this.results = el("div", { part: "results" });
    this.shadowRoot.replaceChildren(
      el("style", { text: STYLE }), actions, this.input, this.camera, this.status, this.results,
    );
  }

  /** Search with a photo (a File or Blob); also callable from the shop's code. */
  async search(photo) {
    this.status.textContent = "Searching…";
    this.results.replaceChildren();
    this.setAttribute("aria-busy", "true");
    const form = () => {
      const data = new FormData();
      data.append("image", photo, photo.name || "photo.jpg");
      data.append("k", String(this.k));
      return data;
    };
    try {
      let objects = [];
      try {
        objects = (await call("/v1/search/scene", { method: "POST", form: form() })).objects;
      } catch (err) {
        if (err.status !== 409) throw err; // 409: no localiser trained yet
      }
      if (objects.length) {
        await this.showScene(photo, objects);
      } else {
        const found = await call("/v1/search/image", { method: "POST", form: form() });
        const ids = found.results.map((r) => r.product_id);
        const [scene] = await this.preview(photo, "scene small");
        this.sceneNodes = [scene];
        await this.showCards(ids, "Looks like your photo");
      }
      this.emit("vitrine-load", { objects: objects.length });
    } catch (err) {
      this.status.textContent =
        err.status === 415 || err.status === 422
          ? "That file is not a photo we can read."
          : "The search failed; please try again.";
      this.emit("vitrine-error", { status: err.status, message: err.message });
    } finally {
      this.removeAttribute("aria-busy");
    }
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  /** The shopper's photo, drawn (its object URL freed once decoded). */
  async preview(photo, kind = "scene") {
    const url = URL.createObjectURL(photo);
    const img = el("img", { src: url, alt: "Your photo", part: "photo" });
    await img.decode().catch(() => {});
    URL.revokeObjectURL(url);
    return [el("div", { class: kind }, img), img];
  }

  async showScene(photo, objects) {
    const [scene, img] = await this.preview(photo);
    const chips = el("div", { class: "actions objects", role: "group",
      "aria-label": "Products found in your photo" });
    const width = img.naturalWidth || 1;
    const height = img.naturalHeight || 1;
    const buttons = [];
    objects.forEach((object, n) => {
      const name = `${object.category || "Product"} ${n + 1}`;
      const [x0, y0, x1, y1] = object.box;
      const box = el("button", {
        type: "button", class: "box", tabindex: "-1", "aria-hidden": "true",
        style: `left:${(100 * x0) / width}%;top:${(100 * y0) / height}%;` +
          `width:${(100 * (x1 - x0)) / width}%;height:${(100 * (y1 - y0)) / height}%`,
      });
      const chip = el("button", { type: "button", class: "secondary", part: "object",
        text: name });
      const pick = () => {
        for (const [b, c] of buttons) {
          b.setAttribute("aria-pressed", String(b === box));
          c.setAttribute("aria-pressed", String(c === chip));
        }
        this.showCards(object.results.map((r) => r.id), `Matches for ${name}`, true);
      };
      box.addEventListener("click", pick);
      chip.addEventListener("click", pick);
      buttons.push([box, chip]);
      scene.append(box);
      chips.append(chip);
    });
    this.status.textContent =
      `Found ${objects.length} product${objects.length === 1 ? "" : "s"} in your photo.`;
    this.sceneNodes = [scene, chips];
    buttons[0][0].click();
  }

  async showCards(ids, heading, ofObject = false) {
    const found = await cards(ids);
    const ul = el("ul", { part: "list", role: "list" });
    ul.append(...found.map((card) => renderCard(card, {})));
    const section = el("section", { part: "section", "aria-label": heading },
      el("h2", { part: "heading", text: heading }), ul);
    if (!ofObject) {
      this.status.textContent = found.length ? "" : "Nothing in the catalog looks like it.";
    }
    this.results.replaceChildren(...this.sceneNodes, section);
  }
}

const ELEMENTS = {
  "vitrine-recommendations": Recommendations,
  "vitrine-similar": Similar,
  "vitrine-complementary": Complementary,
  "vitrine-trending": Trending,
  "vitrine-product-view": ProductView,
  "vitrine-photo-search": PhotoSearch,
};

for (const [name, element] of Object.entries(ELEMENTS)) {
  if (!customElements.get(name)) customElements.define(name, element);
}
