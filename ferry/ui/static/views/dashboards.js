// The dashboards list (/ui/dashboards): every dashboard file ferry serves, and the files that failed to
// load with their file, key path and line. Re-read every few seconds, as ferry re-reads the folder.
"use strict";
(function () {
  const { el, api } = ferry;
  const root = ferry.view();

  function list(items) {
    if (!items.length) return el("p", { class: "empty" }, "No dashboards: put YAML files in the dashboards folder (docs/dashboards.md).");
    return el("table", { class: "grid dash-list" },
      el("thead", {}, el("tr", {}, el("th", {}, "dashboard"), el("th", {}, "about"), el("th", { class: "num" }, "panels"), el("th", {}, "file"))),
      el("tbody", {}, items.filter((d) => d.served).map((d) => el("tr", { "data-dashboard": d.name },
        el("td", {}, el("a", { href: "/ui/dashboards/" + encodeURIComponent(d.name) }, d.title),
          d.error ? el("span", { class: "chip dash-stale", title: "its file has an error: this is its last good version" }, "stale") : null),
        el("td", {}, d.description, " ", d.tags.map((t) => el("span", { class: "chip" }, t))),
        el("td", { class: "num" }, String(d.panels)),
        el("td", { class: "dash-file" }, d.file)))));
  }

  function errors(items) {
    if (!items.length) return null;
    return el("section", { class: "panel dash-errors" },
      el("h2", {}, items.length === 1 ? "1 file did not load" : `${items.length} files did not load`),
      items.map((e) => el("div", { class: "error", role: "alert", "data-file": e.file },
        el("pre", {}, e.error),
        el("p", {}, e.served ? "Its last good version is still shown." : "It has never loaded, so it is not shown."))));
  }

  async function load() {
    try {
      const r = await api("/api/v1/ui/dashboards");
      root.replaceChildren(el("h1", {}, "Dashboards"), errors(r.errors), list(r.dashboards));
    } catch (e) {
      const box = el("div", {});
      root.replaceChildren(el("h1", {}, "Dashboards"), box);
      ferry.showError(box, e);
    }
  }
  load();
  setInterval(load, 3000);
})();
