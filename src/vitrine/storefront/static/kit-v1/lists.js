// Vitrine storefront kit v1: the lists of product cards and the product page's view.

import {
  VitrineError, call, cards, config, el, enc, query, renderCard, skeleton, STYLE, track, userId,
} from "./core.js";

// -- lists -----------------------------------------------------------------------------

/** A list of product cards that loads when it scrolls into view. Subclasses say what
 * to fetch (`fetchList`: {items: [{product_id}], recommendation_id, strategy}). */
export class VitrineList extends HTMLElement {
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

export class Recommendations extends VitrineList {
  static defaultHeading = "Recommended for you";

  fetchList() {
    const q = query({ k: this.k, strategy: this.getAttribute("strategy") });
    return call(`/v1/users/${enc(userId())}/recommendations${q}`);
  }
}

export class Similar extends VitrineList {
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

export class Complementary extends VitrineList {
  static defaultHeading = "Complete the look";

  fetchList() {
    const q = query({ k: this.k, strategy: this.getAttribute("strategy") });
    return call(`/v1/products/${enc(this.productId())}/complementary${q}`);
  }
}

export class Trending extends VitrineList {
  static defaultHeading = "Trending now";

  fetchList() {
    return call(`/v1/trending${query({ k: this.k, category: this.getAttribute("category") })}`);
  }
}

/** Sends the product page's view (with the recommendation that led here); shows nothing. */
export class ProductView extends HTMLElement {
  connectedCallback() {
    const id = this.getAttribute("product-id");
    if (id && this.sent !== id) {
      this.sent = id;
      // after the importing script's configure() (elements upgrade during the import)
      setTimeout(() => track("view", id), 0);
    }
  }
}
