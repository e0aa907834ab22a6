// The target view (?kind=host|service&name=X): every signal of one host or service in the window — its
// logs by level, its spans and traces, its Prometheus series — and the related targets to pivot to.
"use strict";
(function () {
  const { el, state } = ferry;
  const view = ferry.view();
  // Bottom to top of the stacked histogram (the logs explorer's colours).
  const LEVELS = [["error", "#c62828"], ["warn", "#d08400"], ["info", "#4a7fd4"], ["debug", "#9aa3af"], ["other", "#c9ced6"]];
  const levelGroup = (lvl) => (ferry.levelClass(lvl).replace("lvl-", "") || "other");
  const plural = (n, one, many = one + "s") => `${n.toLocaleString()} ${n === 1 ? one : many}`;

  // A value as the search language takes it (quoted when it has spaces or syntax).
  function searchValue(v) {
    return /^[^\s()"*<>=\\]+$/.test(v) ? v : '"' + v.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  }
  const query = (params) => "?" + new URLSearchParams(Object.entries(params).filter(([, v]) => v !== "" && v != null)).toString();
  const targetHref = (kind, name, r) => "/ui/target" + query({ kind, name, from: r.from, to: r.to });
  function tracesHref(kind, name, r, errors) {
    const p = kind === "service" ? { service: name } : { tags: "resource.host.name=" + (/^[^\s"]+$/.test(name) ? name : JSON.stringify(name)) };
    return "/ui/traces" + query({ ...p, status: errors ? "error" : "", from: r.from, to: r.to });
  }

  const head = el("div", { class: "panel target-head" });
  const body = el("div", { class: "target-body" });
  view.replaceChildren(head, body);

  let gen = 0;
  let picker = null;
  async function render() {
    const my = ++gen;
    const kind = state.get("kind"), name = state.get("name");
    document.title = `${name || "target"} · ferry`;
    picker = ferry.timePicker(() => render());
    head.replaceChildren(el("div", { class: "toolbar" },
      el("span", { class: "chip kind", "data-kind": kind }, kind || "?"),
      el("h1", { "data-target-name": "" }, name || "(no name)"), el("span", { class: "grow" }), picker),
    el("div", { class: "related", "data-related": "" }, el("span", { class: "muted" }, "…")));
    body.replaceChildren(el("p", { class: "loading" }, "Reading every signal of this target…"));
    let r;
    try { r = ferry.range(); } catch (e) { ferry.showError(body, e); head.querySelector("[data-related]").replaceChildren(); return; }
    let t;
    try {
      t = await ferry.api("/api/v1/ui/target", { kind, name, start: String(Math.round(r.startNs)), end: String(Math.round(r.endNs)) });
    } catch (e) {
      if (my !== gen) return;
      head.querySelector("[data-related]").replaceChildren();
      ferry.showError(body, e);
      return;
    }
    if (my !== gen) return;
    head.querySelector("[data-related]").replaceChildren(related(t, r));
    const draws = [];
    body.replaceChildren(logsPanel(t, r, draws), tracesPanel(t, r), metricsPanel(t, r));
    for (const d of draws) d();
  }

  function related(t, r) {
    const other = t.kind === "host" ? "service" : "host";
    const label = t.kind === "host" ? "Services on this host" : "Hosts this service ran on";
    if (!t.related.length) return el("span", { class: "muted" }, `${label}: none seen in this time range.`);
    return el("span", {}, el("span", { class: "muted" }, label + ": "),
      t.related.map((x) => el("a", { class: "chip target-link", href: targetHref(other, x.name, r), "data-related-name": x.name,
        title: `every signal of ${other} ${x.name} (seen in ${x.signals.join(", ")})` }, x.name)));
  }

  // --- logs: count, histogram by level (drag to zoom), the newest lines ---
  function logsPanel(t, r, draws) {
    const lg = t.logs;
    const q = `${t.kind}:${searchValue(t.name)}`;
    const panel = el("section", { class: "panel", "data-section": "logs" },
      el("div", { class: "section-head" }, el("h2", {}, "Logs"),
        el("strong", { "data-log-count": lg.count }, plural(lg.count, "line")),
        el("span", { class: "grow" }),
        el("a", { href: "/" + query({ q, from: r.from, to: r.to }), "data-open": "logs" }, "open in logs explorer →")));
    if (!lg.count) { panel.append(el("p", { class: "empty" }, `No log lines from this ${t.kind} in this time range.`)); return panel; }
    const box = el("div", { class: "hist-chart", "data-log-histogram": "" });
    panel.append(box);
    draws.push(() => histogram(box, lg, t));
    panel.append(el("div", { class: "lines", "data-log-lines": "" }, lg.lines.map((l) => {
      const lc = ferry.levelClass(l.level);
      return el("div", { class: "line " + lc, "data-line": "" },
        el("span", { class: "t mono" }, ferry.fmtTime(l.time_ns)),
        el("span", { class: "lvl " + lc }, l.level || "–"),
        el("span", { class: "svc", style: { color: ferry.colour(l.service) } }, t.kind === "host" ? l.service : ((l.resource || {})["host.name"] || "")),
        el("span", { class: "body mono" }, String(l.body)),
        l.trace_id ? el("a", { class: "trace-link", href: "/ui/traces/" + l.trace_id }, "trace") : null);
    })));
    if (lg.count > lg.lines.length) panel.append(el("p", { class: "muted" }, `The newest ${lg.lines.length} of ${lg.count.toLocaleString()} lines.`));
    return panel;
  }

  function histogram(box, lg, t) {
    const step = lg.step_s;
    const endS = Number(t.end_ns) / 1e9;
    const first = Math.floor(Number(t.start_ns) / 1e9 / step) * step;
    const n = Math.max(1, Math.ceil((endS - first) / step));
    const xs = Array.from({ length: n }, (_, i) => first + i * step);
    const raw = LEVELS.map(() => new Array(n).fill(0));
    for (const g of lg.histogram) {
      const i = Math.round((g.bucket - first) / step);
      if (i >= 0 && i < n) raw[LEVELS.findIndex(([name]) => name === levelGroup(g.level))][i] += g.count;
    }
    const cum = [];
    raw.forEach((arr, k) => cum.push(arr.map((v, i) => v + (k ? cum[k - 1][i] : 0))));
    const order = LEVELS.map((_, k) => k).reverse();
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.9, 64] }) : undefined;
    const series = order.map((k) => ({ label: LEVELS[k][0], fill: LEVELS[k][1], stroke: LEVELS[k][1], width: 0, paths: bars, points: { show: false },
      value: (u, v, si, idx) => (idx === null || idx === undefined ? "–" : raw[k][idx]) }));
    const u = ferry.chart(box, series, [xs, ...order.map((k) => cum[k])], {
      height: 130,
      onZoom: (a, b) => { ferry.zoomTo(a, b); render(); },
      uplot: { scales: { x: { time: true, range: [first, first + n * step] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } } },
    });
    u.over.title = "drag to zoom";
    box._uplot = u;
  }

  // --- traces: span and error counts, the traces with spans on the target ---
  function tracesPanel(t, r) {
    const tr = t.traces;
    const panel = el("section", { class: "panel", "data-section": "traces" },
      el("div", { class: "section-head" }, el("h2", {}, "Traces"),
        el("strong", { "data-span-count": tr.spans }, plural(tr.spans, "span")),
        el("span", { class: tr.errors ? "lvl-error" : "muted", "data-error-count": tr.errors }, plural(tr.errors, "error span")),
        el("span", { class: "grow" }),
        el("a", { href: tracesHref(t.kind, t.name, r, false), "data-open": "traces" }, "trace search →"),
        el("a", { href: tracesHref(t.kind, t.name, r, true), "data-open": "error-traces" },
          `error traces${tr.error_traces ? ` (${tr.error_traces.toLocaleString()})` : ""} →`)));
    if (!tr.traces.length) { panel.append(el("p", { class: "empty" }, `No spans from this ${t.kind} in this time range.`)); return panel; }
    panel.append(el("table", { class: "grid", "data-traces": "" },
      el("thead", {}, el("tr", {}, ["", "Start", "Root service", "Root operation", "Duration", `Spans here`, "Spans", "Trace id"]
        .map((h, i) => el("th", { class: i >= 4 && i <= 6 ? "num" : "" }, h)))),
      el("tbody", {}, tr.traces.map((x) => {
        const href = "/ui/traces/" + x.trace_id;
        return el("tr", { "data-trace-id": x.trace_id, class: x.error ? "has-error" : "" },
          el("td", { class: "err-mark lvl-error", title: x.error ? "an error span on this target" : "" }, x.error ? "●" : ""),
          el("td", { class: "mono" }, ferry.fmtTime(x.start_ns)),
          el("td", {}, x.root_service || el("span", { class: "muted" }, "(root span missing)")),
          el("td", {}, el("a", { href }, x.root_name || x.trace_id)),
          el("td", { class: "num" }, ferry.fmtDuration(x.duration_ns)),
          el("td", { class: "num", "data-col": "spans-here" }, String(x.spans_here)),
          el("td", { class: "num" }, String(x.spans)),
          el("td", { class: "mono muted" }, el("a", { href }, x.trace_id.slice(0, 16) + "…")));
      }))));
    return panel;
  }

  // --- metrics: the series names the target reported, each opening the metrics explorer ---
  function metricsPanel(t, r) {
    const m = t.metrics;
    const total = m.series.reduce((a, s) => a + s.series, 0);
    const panel = el("section", { class: "panel", "data-section": "metrics" },
      el("div", { class: "section-head" }, el("h2", {}, "Metrics"),
        el("strong", { "data-series-count": total }, plural(total, "series", "series")),
        el("span", { class: "muted" }, m.series.length ? `in ${plural(m.series.length, "name")}` : "")));
    if (!m.series.length) { panel.append(el("p", { class: "empty" }, `No metrics from this ${t.kind} in this time range.`)); return panel; }
    if (m.inexact_jobs.length) {
      panel.append(el("p", { class: "muted", "data-inexact": "" }, `Points of ${m.inexact_jobs.join(", ")} carry no service.instance.id: ` +
        "their series cannot be told apart by host, so the queries may include other hosts' series of the same job."));
    }
    panel.append(el("table", { class: "grid", "data-metrics": "" },
      el("thead", {}, el("tr", {}, el("th", {}, "Series name"), el("th", { class: "num" }, "Series"), el("th", {}, "Query"))),
      el("tbody", {}, m.series.map((s) => el("tr", { "data-metric": s.name },
        el("td", {}, el("a", { href: "/ui/metrics" + query({ q: s.query, from: r.from, to: r.to }), "data-metric-link": s.name }, s.name)),
        el("td", { class: "num", "data-col": "series" }, String(s.series)),
        el("td", { class: "mono muted query-text" }, s.query))))));
    if (m.truncated) panel.append(el("p", { class: "muted" }, `The first ${m.series.length} names.`));
    return panel;
  }

  window.addEventListener("popstate", () => render());
  render();
})();
