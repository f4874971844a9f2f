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

export {
  VERSION, VitrineError, attribution, cards, configure, track, userId,
} from "./core.js";
import {
  Complementary, ProductView, Recommendations, Similar, Trending,
} from "./lists.js";
import { PhotoSearch } from "./photo-search.js";

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
