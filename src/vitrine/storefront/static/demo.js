// The demo shop's only script: configures the kit with the page's storefront key and
// draws the product page's own product from its card. Everything else is the kit's.
import { cards, configure, track } from "/kit/v1/vitrine.js";

const CUSTOMER = "vitrine-demo-customer";

function customer() {
  try {
    return localStorage.getItem(CUSTOMER) || null;
  } catch {
    return null;
  }
}

configure({
  key: document.body.dataset.key,
  userId: customer(),
  linkPattern: "/demo/products/{id}",
});

const form = document.getElementById("customer-form");
const field = document.getElementById("customer-id");
field.value = customer() || "";
form.addEventListener("submit", (event) => {
  event.preventDefault();
  const id = field.value.trim();
  try {
    if (id) localStorage.setItem(CUSTOMER, id);
    else localStorage.removeItem(CUSTOMER);
  } catch {
    // storage blocked: the demo stays anonymous
  }
  location.reload();
});

function money(price, currency) {
  if (price === null || price === undefined) return "";
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(price);
}

async function showProduct(article) {
  const id = article.dataset.productId;
  let card;
  try {
    [card] = await cards([id]);
  } catch {
    card = undefined;
  }
  article.replaceChildren();
  if (!card) {
    const missing = document.createElement("p");
    missing.textContent = "This product is not in the catalog.";
    article.append(missing);
    return;
  }
  document.title = `${card.title} · Vitrine demo shop`;
  const photo = document.createElement("img");
  photo.className = "product-photo";
  photo.alt = card.title;
  if (card.image) photo.src = card.image;
  const info = document.createElement("div");
  info.className = "product-info";
  const title = document.createElement("h1");
  title.textContent = card.title;
  const price = document.createElement("p");
  price.className = "product-price";
  price.textContent = money(card.price, card.currency);
  const add = document.createElement("button");
  add.type = "button";
  add.className = "add";
  add.textContent = card.available ? "Add to cart" : "Sold out";
  add.disabled = !card.available;
  const note = document.createElement("p");
  note.className = "added";
  note.setAttribute("role", "status");
  add.addEventListener("click", async () => {
    await track("add_to_cart", id);
    note.textContent = "Added to your cart.";
  });
  info.append(title, price, add, note);
  article.append(photo, info);
}

const article = document.getElementById("product");
if (article) showProduct(article);
