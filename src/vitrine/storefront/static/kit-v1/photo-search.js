// Vitrine storefront kit v1: search by photo (shop the look).

import { call, cards, el, renderCard, STYLE } from "./core.js";

// -- photo search ----------------------------------------------------------------------

/** A button that searches the catalog by a photo (the camera on phones, or a file):
 * every product found in the photo (shop the look) when the service has a trained
 * localiser, else products that look like the whole photo. */
export class PhotoSearch extends HTMLElement {
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
