/* Vitrine admin: CSRF header on htmx requests, charts, drop / paste of photos, live monitoring. */
(function () {
  "use strict";
  var PALETTE = ["#3b4cca", "#d1495b", "#2a9d8f", "#e9a23b", "#6a4c93", "#1f7a8c"];

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  function chartConfig(spec) {
    var horizontal = !!spec.horizontal;
    return {
      type: spec.type || "line",
      data: {
        labels: spec.labels || [],
        datasets: (spec.datasets || []).map(function (d, i) {
          var color = PALETTE[i % PALETTE.length];
          return {
            label: d.label, data: d.data || [], series: d.series,
            borderColor: color, backgroundColor: spec.type === "bar" ? color : color + "33",
            fill: false, tension: 0.25, pointRadius: 0, borderWidth: 2, spanGaps: true
          };
        })
      },
      options: {
        indexAxis: horizontal ? "y" : "x",
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: (spec.datasets || []).length > 1 } },
        scales: { x: { ticks: { maxTicksLimit: 10, autoSkip: true } }, y: { beginAtZero: true } }
      }
    };
  }

  function values(spec) {
    return (spec.datasets || []).reduce(function (all, d) { return all.concat(d.data || []); }, []);
  }

  /* Counts (every value whole, or "integer": true) get whole-number ticks on the value axis. */
  function integerTicks(config, spec) {
    var whole = values(spec).every(function (v) { return v === null || Number.isInteger(v); });
    if (!spec.integer && !whole) { return config; }
    var axis = config.options.scales[spec.horizontal ? "x" : "y"];
    axis.ticks = Object.assign({}, axis.ticks, { precision: 0 });
    return config;
  }

  /* A chart with nothing to draw says so instead of showing empty axes (live charts fill
     themselves later, so they keep their axes). */
  function showEmpty(canvas, spec) {
    var hasData = values(spec).some(function (v) { return v !== null && v !== 0; });
    if (hasData || canvas.closest("[data-live-series]")) { return false; }
    var note = document.createElement("p");
    note.className = "muted empty-chart";
    note.textContent = spec.empty || "No data in this period yet.";
    canvas.replaceWith(note);
    return true;
  }

  function initCharts(root) {
    if (!window.Chart) { return; }
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (canvas._chart) { return; }
      var spec = JSON.parse(canvas.dataset.chart);
      if (showEmpty(canvas, spec)) { return; }
      canvas._chart = new window.Chart(canvas, integerTicks(chartConfig(spec), spec));
    });
  }

  function refreshSeries(container) {
    fetch(container.dataset.liveSeries, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (series) {
        if (!series) { return; }
        container.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
          var chart = canvas._chart;
          if (!chart) { return; }
          chart.data.labels = series.t;
          chart.data.datasets.forEach(function (d) { d.data = series[d.series] || []; });
          chart.update();
        });
      })
      .catch(function () { /* the next tick tries again */ });
  }

  function setFile(input, file) {
    var transfer = new DataTransfer();
    transfer.items.add(file);
    input.files = transfer.files;
    input.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function initDropzone(zone) {
    if (zone._ready) { return; }
    zone._ready = true;
    var input = zone.querySelector('input[type="file"]');
    var preview = zone.querySelector(".drop-preview");
    var form = zone.closest("form");
    input.addEventListener("change", function () {
      if (!input.files.length) { return; }
      if (preview) {
        preview.src = URL.createObjectURL(input.files[0]);
        preview.alt = "Chosen photo: " + input.files[0].name;
        preview.hidden = false;
      }
      if (zone.hasAttribute("data-autosubmit") && form) { form.requestSubmit(); }
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (e) { e.preventDefault(); zone.classList.add("over"); });
    });
    ["dragleave", "drop"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("over"); });
    });
    zone.addEventListener("drop", function (e) {
      e.preventDefault();
      var file = e.dataTransfer && e.dataTransfer.files[0];
      if (file) { setFile(input, file); }
    });
  }

  document.addEventListener("paste", function (e) {
    var zone = document.querySelector("[data-dropzone]");
    if (!zone || !e.clipboardData) { return; }
    var item = Array.prototype.find.call(e.clipboardData.items, function (i) {
      return i.kind === "file" && i.type.indexOf("image/") === 0;
    });
    if (item) { e.preventDefault(); setFile(zone.querySelector('input[type="file"]'), item.getAsFile()); }
  });

  function init(root) {
    initCharts(root);
    root.querySelectorAll("[data-dropzone]").forEach(initDropzone);
    root.querySelectorAll("select[data-autosubmit-select]").forEach(function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    init(document);
    document.querySelectorAll("[data-live-series]").forEach(function (container) {
      refreshSeries(container);
      setInterval(function () { refreshSeries(container); }, 5000);
    });
  });
  document.addEventListener("htmx:afterSwap", function (e) { init(e.target); });

  // Shop the look: a box on the photo shows that product's matches.
  document.addEventListener("click", function (e) {
    var box = e.target.closest("[data-scene-object]");
    if (!box) return;
    var scene = box.closest(".scene");
    var number = box.getAttribute("data-scene-object");
    scene.querySelectorAll("[data-scene-object]").forEach(function (b) {
      var on = b.getAttribute("data-scene-object") === number;
      b.classList.toggle("selected", on);
      b.setAttribute("aria-pressed", on ? "true" : "false");
    });
    scene.querySelectorAll("[data-scene-matches]").forEach(function (s) {
      s.hidden = s.getAttribute("data-scene-matches") !== number;
    });
  });
})();
