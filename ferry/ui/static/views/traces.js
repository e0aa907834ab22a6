// Trace search: a form (service, operation, status, duration range, attributes) that writes a TraceQL
// query, which can be edited as text; hits as a duration-over-time scatter plot and a table.
"use strict";
(function () {
  const { el, state, api } = ferry;
  const FORM = ["service", "operation", "status", "minDuration", "maxDuration", "tags"];
  const view = ferry.view();

  // `k=v k2="v 2"` pairs (the tags field) -> [[k, v]]; throws naming what is not a pair.
  function parseTags(text) {
    const out = [], re = /\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)/y;
    let s = text.trim(), m;
    while (s && (re.lastIndex < s.length)) {
      const at = re.lastIndex;
      m = re.exec(s);
      if (!m) throw new ferry.FerryError(`attributes must be key=value pairs, got "${s.slice(at, at + 40)}"`, 400);
      out.push([m[1], m[2].startsWith('"') ? JSON.parse(m[2]) : m[2]]);
    }
    return out;
  }
  const KEY = /^[A-Za-z0-9_.\-/:@]+$/;
  // The TraceQL spanset filter the form describes: every condition on the same span.
  function buildQuery(f) {
    const c = [];
    if (f.service) c.push(`resource.service.name = ${JSON.stringify(f.service)}`);
    if (f.operation) c.push(`name = ${JSON.stringify(f.operation)}`);
    if (f.status === "error") c.push("status = error");
    else if (f.status === "ok") c.push("status != error");
    for (const [k, v] of parseTags(f.tags || "")) {
      if (!KEY.test(k)) throw new ferry.FerryError(`"${k}" is not an attribute name`, 400);
      const scoped = /^(span|resource)\./.test(k) ? k : "." + k;
      c.push(`${scoped} = ${JSON.stringify(v)}`);
    }
    return c.length ? `{ ${c.join(" && ")} }` : "{ }";
  }

  const form = Object.fromEntries(FORM.map((k) => [k, state.get(k)]));
  const service = el("select", { name: "service", "aria-label": "service" }, el("option", { value: "" }, "any service"));
  const operation = el("select", { name: "operation", "aria-label": "operation" }, el("option", { value: "" }, "any operation"));
  const status = el("select", { name: "status", "aria-label": "status" },
    [["", "any status"], ["error", "error"], ["ok", "not error"]].map(([v, t]) => el("option", { value: v, selected: form.status === v }, t)));
  const minD = el("input", { type: "text", name: "minDuration", size: 7, placeholder: "min", title: "shortest trace, e.g. 100ms", value: form.minDuration, "aria-label": "minimum duration" });
  const maxD = el("input", { type: "text", name: "maxDuration", size: 7, placeholder: "max", title: "longest trace, e.g. 2s", value: form.maxDuration, "aria-label": "maximum duration" });
  const tags = el("input", { type: "text", name: "tags", size: 28, placeholder: "attributes: http.route=/checkout", value: form.tags, "aria-label": "attributes" });
  const qbox = el("input", { type: "text", class: "query", "data-query": "", "aria-label": "TraceQL query", spellcheck: "false" });
  const runBtn = el("button", { class: "primary", type: "submit" }, "Search");
  const note = el("span", { class: "muted", "data-duration-note": "" });
  const msg = el("div", { "data-message": "" });
  const plot = el("div", { class: "scatter", "data-scatter": "" });
  const summary = el("div", { class: "muted summary" });
  const table = el("div", { "data-results": "" });

  function readForm() {
    return { service: service.value, operation: operation.value, status: status.value,
      minDuration: minD.value.trim(), maxDuration: maxD.value.trim(), tags: tags.value.trim() };
  }
  function durationNote(f) {
    const parts = [];
    if (f.minDuration) parts.push(`≥ ${f.minDuration}`);
    if (f.maxDuration) parts.push(`≤ ${f.maxDuration}`);
    note.textContent = parts.length ? "trace duration " + parts.join(" and ") : "";
  }

  // A form change rewrites the query from the form (dropping a hand-edited `q` from the URL).
  function formChanged() {
    const f = readForm();
    try { qbox.value = buildQuery(f); } catch (e) { ferry.showError(msg, e); return; }
    state.set({ ...f, q: "" }, true);
    search();
  }

  async function loadServices() {
    try {
      const r = await api("/jaeger/api/services");
      const names = (r.data || []).slice().sort();
      if (form.service && !names.includes(form.service)) names.unshift(form.service);
      service.append(...names.map((n) => el("option", { value: n, selected: n === form.service }, n)));
    } catch (e) { ferry.showError(msg, e); }
  }
  async function loadOperations(keep) {
    operation.replaceChildren(el("option", { value: "" }, "any operation"));
    if (!service.value) return;
    try {
      const r = await api(`/jaeger/api/services/${encodeURIComponent(service.value)}/operations`);
      const names = r.data || [];
      if (keep && !names.includes(keep)) names.unshift(keep);
      operation.append(...names.map((n) => el("option", { value: n, selected: n === keep }, n)));
    } catch (e) { ferry.showError(msg, e); }
  }

  let seq = 0;
  async function search() {
    const mine = ++seq;
    msg.replaceChildren();
    let r;
    try {
      r = ferry.range();
    } catch (e) { ferry.showError(msg, e); return; }
    const f = readForm();
    durationNote(f);
    summary.textContent = "Searching…";
    try {
      const res = await api("/api/v1/ui/traces/search", {
        q: qbox.value.trim(), start: String(r.startNs), end: String(r.endNs), limit: 500,
        minDuration: f.minDuration, maxDuration: f.maxDuration,
      });
      if (mine !== seq) return;
      render(res, r);
    } catch (e) {
      if (mine !== seq) return;
      summary.textContent = "";
      plot.replaceChildren();
      table.replaceChildren();
      ferry.showError(msg, e);
    }
  }

  function render(res, r) {
    const hits = res.traces;
    summary.textContent = `${hits.length} trace${hits.length === 1 ? "" : "s"}` +
      (hits.length >= res.limit ? ` (the newest ${res.limit}; narrow the search for the rest)` : "") +
      ` · ${res.took_ms} ms`;
    if (!hits.length) {
      plot.replaceChildren();
      table.replaceChildren(el("p", { class: "empty" }, "No traces match in this time range."));
      return;
    }
    scatter(hits, r);
    const rows = hits.map((t) => {
      const href = `/ui/traces/${t.trace_id}`;
      return el("tr", { "data-trace-id": t.trace_id, class: t.errors ? "has-error" : "" },
        el("td", { class: "err-mark", title: t.errors ? `${t.errors} error span(s)` : "" }, t.errors ? "●" : ""),
        el("td", { class: "mono" }, ferry.fmtTime(t.start_ms * 1e6)),
        el("td", {}, el("span", { class: "svc-dot", style: { background: ferry.colour(t.root_service || "?") } }),
          t.root_service || el("span", { class: "muted" }, "(root span missing)")),
        el("td", {}, el("a", { href }, t.root_name || t.trace_id)),
        el("td", { class: "num" }, ferry.fmtDuration(t.duration_ns)),
        el("td", { class: "num" }, String(t.spans)),
        el("td", { class: "num" + (t.errors ? " lvl-error" : "") }, String(t.errors)),
        el("td", { class: "mono muted" }, el("a", { href }, t.trace_id.slice(0, 16) + "…")));
    });
    table.replaceChildren(el("table", { class: "grid traces" },
      el("thead", {}, el("tr", {}, ["", "Start", "Root service", "Root name", "Duration", "Spans", "Errors", "Trace id"]
        .map((h, i) => el("th", { class: i >= 4 && i <= 6 ? "num" : "" }, h)))),
      el("tbody", {}, rows)));
  }

  // Duration over time, one dot per trace (errors in red); a dot click opens the trace, a drag zooms.
  function scatter(hits, r) {
    const sorted = hits.slice().sort((a, b) => a.start_ms - b.start_ms);
    const xs = sorted.map((t) => t.start_ms / 1e3);
    const ok = sorted.map((t) => (t.errors ? null : t.duration_ns / 1e6));
    const bad = sorted.map((t) => (t.errors ? t.duration_ns / 1e6 : null));
    const dots = (stroke) => ({ stroke, fill: stroke, paths: () => null, points: { show: true, size: 8, stroke, fill: stroke } });
    const u = ferry.chart(plot, [{ label: "ok", ...dots("#2f6fde") }, { label: "error", ...dots("#c62828") }], [xs, ok, bad], {
      height: 200,
      onZoom: (a, b) => { ferry.zoomTo(a, b); syncPicker(); search(); },
      axes: [{}, { label: "duration (ms)", size: 60, values: (_, vals) => vals.map((v) => ferry.fmtNum(v)) }],
      uplot: { scales: { x: { time: true, min: r.startNs / 1e9, max: r.endNs / 1e9 } } },
    });
    plot.dataset.dots = String(sorted.length);
    plot._uplot = u;
    plot._traces = sorted;
    let down = null;
    u.over.addEventListener("mousedown", (e) => { down = [e.clientX, e.clientY]; });
    u.over.addEventListener("click", (e) => {
      if (down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 4) return;
      const box = u.over.getBoundingClientRect();
      const px = e.clientX - box.left, py = e.clientY - box.top;
      let best = null, bestD = 10;
      sorted.forEach((t, i) => {
        const d = Math.hypot(u.valToPos(xs[i], "x") - px, u.valToPos(t.duration_ns / 1e6, "y") - py);
        if (d < bestD) { best = t; bestD = d; }
      });
      if (best) location.href = `/ui/traces/${best.trace_id}`;
    });
  }

  let picker;
  function syncPicker() {
    const fresh = ferry.timePicker(search);
    picker.replaceWith(fresh);
    picker = fresh;
  }

  function init() {
    picker = ferry.timePicker(search);
    const f = el("form", { class: "toolbar search-form" },
      service, operation, status, el("label", { class: "dur" }, "Duration", minD, "–", maxD), tags, picker, runBtn);
    const qrow = el("form", { class: "toolbar" }, el("span", { class: "muted" }, "TraceQL"), qbox,
      el("button", { type: "submit" }, "Run"), note);
    f.addEventListener("submit", (e) => { e.preventDefault(); formChanged(); });
    qrow.addEventListener("submit", (e) => {
      e.preventDefault();
      state.set({ q: qbox.value.trim() }, true);
      search();
    });
    for (const input of [service, operation, status]) input.addEventListener("change", async () => {
      if (input === service) await loadOperations("");
      formChanged();
    });
    for (const input of [minD, maxD, tags]) input.addEventListener("change", formChanged);
    view.replaceChildren(f, qrow, msg, el("div", { class: "panel" }, summary, plot), table);
    let q = state.get("q");
    if (!q) {
      try { q = buildQuery(form); } catch (e) { ferry.showError(msg, e); q = "{ }"; }
    }
    qbox.value = q;
    window.addEventListener("popstate", () => location.reload());
    loadServices().then(() => loadOperations(form.operation));
    search();
  }
  init();
})();
