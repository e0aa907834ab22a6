// Services: RED (rate, errors, duration) per service from the span metrics computed at ingest, a service
// map from the service-graph metrics, and per service (?service=X) RED charts and its operations.
"use strict";
(function () {
  const { el, state, api } = ferry;
  const PROM = "/prometheus/api/v1";
  const root = ferry.view();
  let pendingDraws = [];
  const ENTRY = 'span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"';
  const ERR = 'status_code="STATUS_CODE_ERROR"';
  const CALLS = "traces_span_metrics_calls_total";
  const BUCKETS = "traces_span_metrics_duration_seconds_bucket";
  const QUANTILES = [0.5, 0.95, 0.99];

  const secs = (ns) => (ns / 1e9).toFixed(3);
  const q = (s) => JSON.stringify(String(s)); // a PromQL string literal
  const pct = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : ferry.fmtNum(100 * x) + "%");
  const dur = (s) => (s === null || s === undefined || !Number.isFinite(s) ? "–" : ferry.fmtDuration(s * 1e9));
  const perSec = (x) => (x === null || x === undefined || Number.isNaN(x) ? "–" : ferry.fmtNum(x) + "/s");

  // The PromQL engine's "L:C: parse error: what" in plain words.
  function plain(err) {
    const msg = err instanceof Error ? err.message : String(err);
    const m = /^(\d+):(\d+): (?:parse error: )?([\s\S]*)$/.exec(msg);
    return new Error(m ? `The query cannot be run (column ${m[2]}): ${m[3]}` : msg);
  }
  async function instant(expr, r) {
    try { return (await api(PROM + "/query", { query: expr, time: secs(r.endNs) })).data.result; } catch (e) { throw plain(e); }
  }
  // {label value -> number} of an instant vector.
  function byLabel(result, label) {
    const out = new Map();
    for (const s of result) out.set(s.metric[label] || "", parseFloat(s.value[1]));
    return out;
  }
  // The window every number of the table covers: the picked time range, whole seconds.
  const windowOf = (r) => `${Math.max(1, Math.round((r.endNs - r.startNs) / 1e9))}s`;

  // RED of every `group` value (service_name, or span_name within a service) over the window.
  async function red(r, sel, group) {
    const w = windowOf(r);
    const calls = `sum by (${group}) (rate(${CALLS}{${sel}}[${w}]))`;
    const [entry, errors, spans, ...qs] = await Promise.all([
      instant(`sum by (${group}) (rate(${CALLS}{${sel}, ${ENTRY}}[${w}]))`, r),
      instant(`sum by (${group}) (rate(${CALLS}{${sel}, ${ENTRY}, ${ERR}}[${w}]))`, r),
      instant(calls, r),
      ...QUANTILES.map((x) => instant(`histogram_quantile(${x}, sum by (${group}, le) (rate(${BUCKETS}{${sel}, ${ENTRY}}[${w}])))`, r)),
    ]);
    const e = byLabel(entry, group), er = byLabel(errors, group), all = byLabel(spans, group);
    const quant = qs.map((x) => byLabel(x, group));
    return [...all.keys()].sort().map((name) => {
      const rate = e.has(name) ? e.get(name) : null;
      return { name, rate, errors: rate ? (er.get(name) || 0) / rate : rate === 0 ? 0 : null, spans: all.get(name),
        p: quant.map((m) => (m.has(name) ? m.get(name) : null)) };
    });
  }

  function redTable(rows, first, link) {
    if (!rows.length) return el("p", { class: "empty" }, "No span metrics in this time range. Send traces (OTLP) and they appear here.");
    return el("table", { class: "grid", "data-red-table": "" },
      el("thead", {}, el("tr", {}, el("th", {}, first), el("th", { class: "num" }, "requests"), el("th", { class: "num" }, "errors"),
        ...QUANTILES.map((x) => el("th", { class: "num" }, "p" + Math.round(x * 100))), el("th", { class: "num" }, "all spans"))),
      el("tbody", {}, rows.map((row) => el("tr", { "data-row": row.name },
        el("td", {}, link ? link(row.name) : row.name),
        el("td", { class: "num", "data-col": "rate" }, perSec(row.rate)),
        el("td", { class: "num" + (row.errors > 0 ? " lvl-error" : ""), "data-col": "errors" }, pct(row.errors)),
        ...row.p.map((v, i) => el("td", { class: "num", "data-col": "p" + Math.round(QUANTILES[i] * 100) }, dur(v))),
        el("td", { class: "num", "data-col": "spans" }, perSec(row.spans))))));
  }

  function serviceLink(name) {
    const p = new URLSearchParams(location.search);
    p.set("service", name);
    return el("a", { href: location.pathname + "?" + p.toString(), "data-service": name }, name || "(no service)");
  }
  // Every signal of the service (logs, traces, metrics, its hosts) in the same window: the target view.
  function targetHref(name) {
    return "/ui/target?" + new URLSearchParams({ kind: "service", name, from: state.get("from", "now-1h"), to: state.get("to", "now") });
  }

  // --- the service map: nodes in layers (callers left of callees), edges with rate and error ratio --
  function layers(nodes, edges) {
    const depth = new Map(nodes.map((n) => [n, 0]));
    // Longest path from the callers, capped at the node count so a cycle cannot loop forever.
    for (let i = 0; i < nodes.length; i++) {
      let moved = false;
      for (const e of edges) {
        if (e.client === e.server) continue;
        const d = depth.get(e.client) + 1;
        if (d > depth.get(e.server) && d < nodes.length) { depth.set(e.server, d); moved = true; }
      }
      if (!moved) break;
    }
    return depth;
  }

  function serviceMap(services, edges) {
    const names = [...new Set([...services, ...edges.flatMap((e) => [e.client, e.server])])].sort();
    if (!names.length) return el("p", { class: "empty" }, "No services yet.");
    const depth = layers(names, edges);
    const cols = new Map();
    for (const n of names) { const d = depth.get(n); if (!cols.has(d)) cols.set(d, []); cols.get(d).push(n); }
    const NW = 170, NH = 34, GX = 140, GY = 26, PAD = 12;
    const pos = new Map();
    let rows = 0;
    for (const [d, list] of cols) {
      list.forEach((n, i) => pos.set(n, { x: PAD + d * (NW + GX), y: PAD + i * (NH + GY) }));
      rows = Math.max(rows, list.length);
    }
    const width = PAD * 2 + (Math.max(...cols.keys()) + 1) * (NW + GX) - GX;
    const height = PAD * 2 + rows * (NH + GY) - GY + 14;
    const NS = "http://www.w3.org/2000/svg";
    const s = (tag, attrs, ...kids) => {
      const node = document.createElementNS(NS, tag);
      for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
      for (const c of kids) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
      return node;
    };
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "service-map", "data-service-map": "", role: "img",
      "aria-label": "service map" });
    svg.append(s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7",
      orient: "auto-start-reverse" }, s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#8a94a6" }))));
    for (const e of edges) {
      const a = pos.get(e.client), b = pos.get(e.server);
      const back = b.x <= a.x; // a call to a caller's own layer or an earlier one (a cycle): curve below
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = back ? b.x + NW / 2 : b.x, y2 = back ? b.y + NH : b.y + NH / 2;
      const mx = (x1 + x2) / 2, my = back ? Math.max(y1, y2) + 40 : (y1 + y2) / 2;
      const path = back ? `M${x1},${y1} Q${x1 + 60},${my} ${x2},${y2}` : `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
      const bad = e.failed > 0;
      const label = `${perSec(e.rate)} · ${pct(e.rate ? e.failed / e.rate : 0)} err`;
      svg.append(s("g", { class: "edge" + (bad ? " failing" : ""), "data-edge": `${e.client}->${e.server}` },
        s("title", {}, `${e.client} → ${e.server}: ${label}`),
        s("path", { d: path, "marker-end": "url(#arrow)" }),
        s("text", { x: mx, y: my - 4, "text-anchor": "middle", class: "edge-label" }, label)));
    }
    for (const n of names) {
      const p = pos.get(n);
      const a = s("a", { href: serviceLink(n).getAttribute("href"), "data-node": n },
        s("title", {}, n), s("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 6, fill: ferry.colour(n) }),
        s("text", { x: p.x + NW / 2, y: p.y + NH / 2 + 4, "text-anchor": "middle" }, n.length > 22 ? n.slice(0, 21) + "…" : n));
      svg.append(s("g", { class: "node" }, a));
    }
    return svg;
  }

  async function graphEdges(r, sel) {
    const w = windowOf(r);
    const [req, failed] = await Promise.all([
      instant(`sum by (client, server) (rate(traces_service_graph_request_total{${sel}}[${w}]))`, r),
      instant(`sum by (client, server) (rate(traces_service_graph_request_failed_total{${sel}}[${w}]))`, r),
    ]);
    const f = new Map(failed.map((x) => [x.metric.client + "\u0000" + x.metric.server, parseFloat(x.value[1])]));
    return req.map((x) => ({ client: x.metric.client || "", server: x.metric.server || "", rate: parseFloat(x.value[1]),
      failed: f.get(x.metric.client + "\u0000" + x.metric.server) || 0 }));
  }

  // --- overview --------------------------------------------------------------------------------------
  async function overview(r, body) {
    const filter = state.get("filter");
    try { await overviewOf(r, body, filter); } catch (e) {
      if (filter && /regex/i.test(e.message)) throw new Error(`The filter ${JSON.stringify(filter)} is not a valid regular expression (${e.message.replace(/^.*?: /, "")}).`);
      throw e;
    }
  }
  async function overviewOf(r, body, filter) {
    const sel = filter ? `service_name=~${q(filter)}` : 'service_name=~".+"';
    const [rows, edges] = await Promise.all([red(r, sel, "service_name"),
      graphEdges(r, filter ? `client=~${q(filter)}` : "").then(async (out) => {
        if (!filter) return out;
        const more = await graphEdges(r, `server=~${q(filter)}`);
        const seen = new Set(out.map((e) => e.client + "\u0000" + e.server));
        return out.concat(more.filter((e) => !seen.has(e.client + "\u0000" + e.server)));
      })]);
    body.replaceChildren(
      el("div", { class: "panel" }, el("h2", {}, "Services"),
        el("p", { class: "muted" }, `Requests are server and consumer spans; rates are averages over ${windowOf(r)}.`),
        redTable(rows, "service", (n) => [serviceLink(n), " ", el("a", { class: "muted", href: targetHref(n), "data-target-link": n,
          title: `every signal of ${n}` }, "all signals")])),
      el("div", { class: "panel map-panel" }, el("h2", {}, "Service map"),
        el("p", { class: "muted" }, "Callers left of callees; each arrow is calls per second and the share that failed."),
        el("div", { class: "map-scroll" }, serviceMap(rows.map((x) => x.name), edges))));
  }

  // --- one service ----------------------------------------------------------------------------------
  function autoStep(r) { return Math.max(1, Math.ceil((r.endNs - r.startNs) / 1e9 / 200)); }

  // Aligned to the step, so that every query's points fall on the same x values.
  async function rangeQuery(expr, r, step) {
    const start = Math.floor(r.startNs / 1e9 / step) * step;
    try {
      return (await api(PROM + "/query_range", { query: expr, start, end: secs(r.endNs), step })).data.result;
    } catch (e) { throw plain(e); }
  }

  async function chartPanel(title, unit, exprs, r) {
    const box = el("div", { class: "chart", "data-chart": title });
    const panel = el("div", { class: "panel chart-panel" }, el("h3", {}, title), box);
    const step = autoStep(r);
    const results = await Promise.all(exprs.map(([, e]) => rangeQuery(e.replaceAll("$w", `${Math.max(60, 4 * step)}s`), r, step)));
    const start = Math.floor(r.startNs / 1e9 / step) * step;
    const xs = [];
    for (let t = start; t <= r.endNs / 1e9; t += step) xs.push(t);
    const index = new Map(xs.map((t, i) => [t, i]));
    const ys = results.map((res) => {
      const y = xs.map(() => null);
      for (const s of res) for (const [t, v] of s.values) { const i = index.get(Math.round(t)); if (i !== undefined) y[i] = (y[i] || 0) + parseFloat(v); }
      return y;
    });
    if (ys.every((y) => y.every((v) => v === null))) { box.append(el("p", { class: "empty" }, "No data in this time range.")); return panel; }
    const fmt = unit === "s" ? (v) => dur(v) : unit === "%" ? (v) => ferry.fmtNum(v) + "%" : (v) => perSec(v);
    // Drawn once the panel is in the page (uPlot sizes itself to its container).
    pendingDraws.push(() => ferry.chart(box, exprs.map(([label], i) => ({ label, stroke: ferry.colour(label + i), width: 1.5,
      value: (u, v) => (v === null ? "–" : fmt(v)) })), [xs, ...ys], {
      height: 170, onZoom: (a, b) => { ferry.zoomTo(a, b); render(); },
      axes: [{}, { values: (u, vals) => vals.map((v) => (v === null ? "" : fmt(v))), size: 70 }],
    }));
    return panel;
  }

  async function oneService(r, body, service) {
    const sel = `service_name=${q(service)}`;
    const enc = encodeURIComponent(service);
    const pivots = el("div", { class: "toolbar pivots" },
      el("a", { class: "chip", href: `/?q=${encodeURIComponent("service:" + (/[\s"]/.test(service) ? JSON.stringify(service) : service))}`,
        "data-pivot": "logs" }, "Logs"),
      el("a", { class: "chip", href: `/ui/traces?service=${enc}`, "data-pivot": "traces" }, "Traces"),
      el("a", { class: "chip", href: `/ui/traces?service=${enc}&status=error`, "data-pivot": "errors" }, "Error traces"),
      el("a", { class: "chip", href: targetHref(service), "data-pivot": "target" }, "All signals"));
    const back = el("a", { href: location.pathname + "?" + new URLSearchParams({ from: r.from, to: r.to }).toString(), "data-back": "" }, "← all services");
    const base = `${CALLS}{${sel}, ${ENTRY}}`;
    const edgesOf = (side) => graphEdges(r, `${side}=${q(service)}`);
    const [charts, ops, callers, callees] = await Promise.all([
      Promise.all([
        chartPanel("Requests", "/s", [["requests/s", `sum(rate(${base}[$w]))`]], r),
        chartPanel("Errors", "%", [["error %",
          `100 * (sum(rate(${CALLS}{${sel}, ${ENTRY}, ${ERR}}[$w])) or vector(0)) / sum(rate(${base}[$w]))`]], r),
        chartPanel("Duration", "s", QUANTILES.map((x) => [`p${Math.round(x * 100)}`,
          `histogram_quantile(${x}, sum by (le) (rate(${BUCKETS}{${sel}, ${ENTRY}}[$w])))`]), r),
      ]),
      red(r, sel, "span_name"), edgesOf("server"), edgesOf("client"),
    ]);
    const uniq = callers.concat(callees.filter((e) => e.client !== service || e.server !== service));
    body.replaceChildren(
      el("div", { class: "service-head" }, back, el("h2", { "data-service-title": "" }, service), pivots),
      el("div", { class: "charts" }, charts),
      el("div", { class: "panel" }, el("h2", {}, "Operations"),
        el("p", { class: "muted" }, `Span names of ${service}; rates are averages over ${windowOf(r)}.`), redTable(ops, "operation", null)),
      el("div", { class: "panel map-panel" }, el("h2", {}, "Callers and callees"),
        el("div", { class: "map-scroll" }, serviceMap([service], uniq))));
  }

  // --- layout -----------------------------------------------------------------------------------------
  const filter = el("input", { type: "text", class: "query", "data-query": "", "aria-label": "service filter",
    placeholder: "filter services (a regular expression, e.g. pay.*) — Enter applies", value: state.get("filter") });
  filter.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); state.set({ filter: filter.value.trim(), service: "" }, true); render(); }
  });
  const body = el("div", { "data-body": "" });
  root.replaceChildren(el("div", { class: "toolbar" }, filter, ferry.timePicker(() => render())), body);

  let generation = 0;
  async function render() {
    const mine = ++generation;
    pendingDraws = [];
    const service = state.get("service");
    filter.hidden = Boolean(service);
    body.replaceChildren(el("p", { class: "loading" }, "Reading span metrics…"));
    const target = el("div");
    try {
      const r = ferry.range();
      if (service) await oneService(r, target, service); else await overview(r, target);
      if (mine === generation) {
        body.replaceChildren(...target.childNodes);
        for (const draw of pendingDraws) draw();
      }
      pendingDraws = [];
    } catch (e) {
      if (mine === generation) ferry.showError(body, e);
    }
  }
  window.addEventListener("popstate", render);
  render();
})();
