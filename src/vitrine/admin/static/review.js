/* Vitrine admin, review queue: one keystroke per decision on the highlighted card.
   y or Enter: confirm the model's value; 1-5: pick that value; j or n: next card; k: previous.
   Decisions are the cards' own htmx forms (the buttons work with a mouse or a finger too);
   after the queue comes back without the decided card, the card now in its place is
   highlighted. */
(function () {
  "use strict";
  var current = 0;
  var busy = false;

  function cards() {
    return Array.prototype.slice.call(document.querySelectorAll("#review-list > .review-card"));
  }

  function mark(all) {
    all.forEach(function (card, i) {
      card.classList.toggle("focused", i === current);
      if (i === current) { card.setAttribute("aria-current", "true"); } else { card.removeAttribute("aria-current"); }
    });
  }

  function highlight(i, focus) {
    var all = cards();
    if (!all.length) { return; }
    current = Math.max(0, Math.min(i, all.length - 1));
    mark(all);
    if (focus) {
      all[current].focus({ preventScroll: true });
      all[current].scrollIntoView({ block: "nearest" });
    }
  }

  function typing(target) {
    return !!target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) { return; }
    var all = cards();
    if (!all.length) { return; }
    var key = e.key;
    if (key === "j" || key === "n") { e.preventDefault(); highlight(current + 1, true); return; }
    if (key === "k") { e.preventDefault(); highlight(current - 1, true); return; }
    var card = all[current];
    var onCard = e.target === card || e.target === document.body || e.target.id === "main";
    var button = null;
    if (key === "y" || (key === "Enter" && onCard)) {
      button = card.querySelector('[data-review="confirm"]');
    } else if (/^[1-5]$/.test(key)) {
      button = card.querySelector('[data-review="' + key + '"]');
    }
    if (!button) { return; }
    e.preventDefault();
    if (!busy && !button.disabled) { button.click(); }
  });

  document.addEventListener("focusin", function (e) {
    var card = e.target.closest ? e.target.closest("#review-list > .review-card") : null;
    if (!card) { return; }
    var all = cards();
    var i = all.indexOf(card);
    if (i >= 0 && i !== current) { current = i; mark(all); }
  });

  document.addEventListener("htmx:beforeRequest", function (e) {
    if (e.target.closest && e.target.closest("#review-queue")) { busy = true; }
  });
  document.addEventListener("htmx:sendError", function () { busy = false; });
  document.addEventListener("htmx:afterSettle", function (e) {
    if (e.target.id !== "review-queue") { return; }
    busy = false;
    highlight(current, true);
  });

  document.addEventListener("DOMContentLoaded", function () { highlight(0, true); });
})();
