// The metrics explorer: a browser of metric names (type, unit, help, series, label cardinality) and a
// PromQL box drawn as lines, stacked areas or a bucket heatmap, with exemplars that open their trace.
"use strict";
(function () {
  const { el, state, api } = ferry;
  const PROM = "/prometheus/api/v1";
  const root = ferry.view();
  let catalogue = null; // {metrics: [...]} of the current range, filtered on the client as one types

  const secs = (ns) => (ns / 1e9).toFixed(3);
  const chartType = () => (["line", "area", "heatmap"].includes(state.get("chart")) ? state.get("chart") : "line");

  // "{code="200", job="x"}" as Prometheus writes a series; the name first when it has one.
  function seriesName(metric) {
    const { __name__: name, ...rest } = metric;
    const labels = Object.keys(rest).sort().map((k) => `${k}="${rest[k]}"`).join(", ");
    return (name || "") + "{" + labels + "}";
  }

  // The engine's "L:C: parse error: what" in plain words, with where.
  function plainError(err) {
    const msg = err instanceof Error ? err.message : String(err);
    const m = /^(\d+):(\d+): (?:parse error: )?([\s\S]*)$/.exec(msg);
    return m ? `The query cannot be run (line ${m[1]}, column ${m[2]}): ${m[3]}` : msg;
  }

  function autoStep(r) {
    return Math.max(1, Math.ceil((r.endNs - r.startNs) / 1e9 / 300));
  }

  // --- layout -------------------------------------------------------------------------------------
  const query = el("input", { type: "text", class: "query", "data-query": "", "aria-label": "PromQL query",
    placeholder: "PromQL, e.g. sum by (code) (rate(http_requests_total[5m])) — Enter runs", value: state.get("q") });
  const step = el("input", { type: "text", size: 6, "data-step": "", "aria-label": "step", placeholder: "auto",
    title: "resolution: seconds or a duration (30s, 1m); empty for about 300 points", value: state.get("step") });
  const typeButtons = ["line", "area", "heatmap"].map((t) => el("button", {
    type: "button", "data-chart-type": t, "aria-pressed": String(chartType() === t),
    title: { line: "one line per series", area: "series stacked", heatmap: "histogram buckets (le) as a heatmap" }[t],
    onclick: () => { state.set({ chart: t }, true); syncButtons(); run(); },
  }, t));
  const chartBox = el("div", { id: "metric-chart", class: "panel chart-panel" },
    el("p", { class: "empty" }, "Type a PromQL query above, or choose a metric on the left."));
  const search = el("input", { type: "search", "data-metric-search": "", "aria-label": "search metric names",
    placeholder: "search metric names", value: state.get("find") });
  const list = el("div", { class: "metric-list" }, el("p", { class: "loading" }, "Reading metric names…"));

  function syncButtons() {
    for (const b of typeButtons) b.setAttribute("aria-pressed", String(b.dataset.chartType === chartType()));
  }

  query.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); submit(); } });
  step.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); submit(); } });
  search.addEventListener("input", () => { state.set({ find: search.value }); showList(); });

  function submit() {
    state.set({ q: query.value.trim(), step: step.value.trim(), chart: chartType() }, true);
    run();
  }

  root.replaceChildren(
    el("div", { class: "metrics-layout" },
      el("section", { class: "panel browser", "aria-label": "metric names" },
        el("h2", {}, "Metrics"), search, list),
      el("section", { class: "explore" },
        el("div", { class: "toolbar" }, query, el("button", { class: "primary", type: "button", onclick: submit }, "Run")),
        el("div", { class: "toolbar" }, ferry.timePicker(() => { loadCatalogue(); run(); }),
          el("label", { class: "muted" }, "step ", step), el("span", { class: "chart-types" }, typeButtons)),
        chartBox)));

  // --- the metric-name browser --------------------------------------------------------------------
  async function loadCatalogue() {
    let r;
    try { r = ferry.range(); } catch (e) { ferry.showError(list, e); return; }
    try {
      catalogue = await api("/api/v1/ui/metrics", { start: r.startNs, end: r.endNs });
      showList();
    } catch (e) { ferry.showError(list, e); }
  }

  function pick(m) {
    const bucket = m.name.endsWith("_bucket") && m.labels.some((l) => l.name === "le");
    query.value = bucket ? `sum by (le) (rate(${m.name}[5m]))` : m.name;
    state.set({ q: query.value, chart: bucket ? "heatmap" : (chartType() === "heatmap" ? "line" : chartType()) }, true);
    syncButtons();
    run();
  }

  function showList() {
    if (!catalogue) return;
    const needle = search.value.trim().toLowerCase();
    const found = catalogue.metrics.filter((m) => m.name.toLowerCase().includes(needle));
    if (!found.length) {
      list.replaceChildren(el("p", { class: "empty" }, needle ? `No metric name contains "${needle}" in this time range.`
        : "No metrics in this time range."));
      return;
    }
    const shown = found.slice(0, 300);
    list.replaceChildren(
      el("p", { class: "muted count" }, `${found.length} metric name${found.length === 1 ? "" : "s"}` +
        (found.length > shown.length ? ` (first ${shown.length} shown: narrow the search)` : "")),
      ...shown.map((m) => {
        const many = m.labels.filter((l) => l.warn);
        return el("div", { class: "metric" + (m.warn ? " warn" : ""), "data-metric-row": m.name },
          el("div", { class: "metric-head" },
            el("button", { type: "button", class: "link mono", "data-metric-pick": "", title: "query this metric",
              onclick: () => pick(m) }, m.name),
            el("span", { class: "chip type-" + m.type }, m.type),
            m.unit ? el("span", { class: "chip unit" }, m.unit) : null,
            el("span", { class: "series" + (m.series > catalogue.series_warn ? " warn" : ""), "data-series-count": "" },
              `${m.series.toLocaleString()} series`)),
          m.help ? el("div", { class: "help muted" }, m.help) : null,
          el("div", { class: "labels" }, m.labels.map((l) => el("span", {
            class: "chip label" + (l.warn ? " warn" : ""), "data-label": l.name,
            title: `${l.values} distinct value${l.values === 1 ? "" : "s"}`,
          }, `${l.name} ${l.values.toLocaleString()}`))),
          many.length || m.series > catalogue.series_warn ? el("div", { class: "cardinality" },
            "⚠ " + [m.series > catalogue.series_warn ? `${m.series.toLocaleString()} series` : null,
              ...many.map((l) => `${l.name} has many values (${l.values.toLocaleString()})`)].filter(Boolean).join("; ") +
            ": every value is a series of its own, which slows queries and grows the store") : null);
      }));
  }

  // --- running a query ----------------------------------------------------------------------------
  let runId = 0;
  async function run() {
    const q = state.get("q");
    query.value = q;
    if (!q) return;
    const id = ++runId;
    let r;
    try { r = ferry.range(); } catch (e) { ferry.showError(chartBox, e); return; }
    const stepText = state.get("step") || String(autoStep(r));
    chartBox.replaceChildren(el("p", { class: "loading" }, "Running the query…"));
    let data;
    try {
      data = (await api(PROM + "/query_range", { query: q, start: secs(r.startNs), end: secs(r.endNs), step: stepText })).data;
    } catch (e) {
      if (id === runId) chartBox.replaceChildren(el("div", { class: "error", role: "alert" }, plainError(e)));
      return;
    }
    if (id !== runId) return;
    const result = data.result || [];
    if (!result.length) {
      chartBox.replaceChildren(el("p", { class: "empty" }, "The query matched no series in this time range."));
      return;
    }
    if (chartType() === "heatmap") drawHeatmap(result, r);
    else drawChart(result, r, q, id);
  }

  // The step grid every series of a range query lies on, and each series' values on it (null: no point).
  function align(result) {
    const xs = [...new Set(result.flatMap((s) => s.values.map((v) => v[0])))].sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const ys = result.map((s) => {
      const y = new Array(xs.length).fill(null);
      for (const [t, v] of s.values) { const f = parseFloat(v); y[at.get(t)] = Number.isFinite(f) ? f : null; }
      return y;
    });
    return { xs, ys };
  }

  function legend(items, onToggle) {
    return el("div", { class: "legend" }, items.map((it, i) => el("span", {
      class: "legend-item", title: "click to hide or show", onclick: (e) => onToggle(i, e.currentTarget),
    }, el("i", { class: "swatch", style: { background: it.colour } }), it.name)));
  }

  function drawChart(result, r, q, id) {
    const names = result.map((s) => seriesName(s.metric));
    const { xs, ys } = align(result);
    const stacked = chartType() === "area";
    let data = ys;
    if (stacked) { // each series drawn at the sum of those before it; the highest first so lower fills stay visible
      const acc = new Array(xs.length).fill(0);
      data = ys.map((y) => y.map((v, i) => (acc[i] += v || 0)));
    }
    const order = stacked ? data.map((_, i) => data.length - 1 - i) : data.map((_, i) => i);
    const series = order.map((i) => ({
      label: names[i], stroke: ferry.colour(names[i]), width: 1.5, points: { show: false },
      fill: stacked ? ferry.colour(names[i]).replace(")", " / 0.45)") : undefined,
    }));
    const plot = el("div", { class: "plot" });
    const items = names.map((n) => ({ name: n, colour: ferry.colour(n) }));
    chartBox.replaceChildren(plot, legend(items, (i, node) => {
      const idx = order.indexOf(i) + 1;
      const show = !u.series[idx].show;
      u.setSeries(idx, { show });
      node.classList.toggle("off", !show);
    }));
    if (stacked) chartBox.append(el("p", { class: "muted note" }, "Stacked: each band is one series, the top line their sum."));
    const u = ferry.chart(plot, series, [xs, ...order.map((i) => data[i])], {
      height: 320, legend: false,
      onZoom: (a, b) => { ferry.zoomTo(a, b); location.reload(); },
      // The whole chosen range, not just where points are: exemplars before the first step still show.
      uplot: { scales: { x: { time: true, range: () => [r.startNs / 1e9, r.endNs / 1e9] } } },
    });
    exemplars(u, plot, q, r, id);
  }

  // Exemplars: dots at their time and value (held inside the plot when off its scale), each a link to its trace.
  async function exemplars(u, plot, q, r, id) {
    let found;
    try {
      found = (await api(PROM + "/query_exemplars", { query: q, start: secs(r.startNs), end: secs(r.endNs) })).data;
    } catch (_) {
      return; // the chart stands without them; a query the engine ran has selectors it can read
    }
    if (id !== runId || !found || !found.length) return;
    const over = u.over;
    const w = over.clientWidth, h = over.clientHeight;
    for (const s of found) {
      for (const ex of s.exemplars) {
        const trace = ex.labels.trace_id;
        if (!trace) continue;
        const x = u.valToPos(ex.timestamp, "x"), v = parseFloat(ex.value);
        if (!(x >= 0 && x <= w)) continue;
        const yRaw = u.valToPos(v, "y");
        const y = Math.min(h - 4, Math.max(4, Number.isFinite(yRaw) ? yRaw : h - 4));
        const dot = el("a", { class: "exemplar", href: "/ui/traces/" + trace, style: { left: x + "px", top: y + "px" },
          "aria-label": `exemplar ${ex.value} of trace ${trace}` });
        const tip = el("div", { class: "exemplar-tip" },
          el("div", { class: "mono" }, "trace " + trace), `value ${ex.value} at ${ferry.fmtTime(ex.timestamp * 1e9)}`,
          el("div", { class: "mono muted" }, seriesName(s.seriesLabels)), el("div", { class: "muted" }, "click to open the trace"));
        dot.addEventListener("mouseenter", () => { plot.querySelectorAll(".exemplar-tip").forEach((t) => t.remove());
          tip.style.left = x + "px"; tip.style.top = y + "px"; over.append(tip); });
        dot.addEventListener("mouseleave", () => tip.remove());
        dot.addEventListener("mousedown", (e) => e.stopPropagation()); // a click, not the start of a zoom
        over.append(dot);
      }
    }
  }

  // --- heatmap of histogram buckets ---------------------------------------------------------------
  function drawHeatmap(result, r) {
    const byLe = new Map();
    for (const s of result) {
      const le = s.metric.le;
      if (le === undefined) {
        chartBox.replaceChildren(el("div", { class: "error", role: "alert" },
          "A heatmap needs histogram buckets: series with an `le` label, such as " +
          "sum by (le) (rate(request_duration_seconds_bucket[5m])). This query's series have none: " + seriesName(s.metric)));
        return;
      }
      (byLe.get(le) || byLe.set(le, []).get(le)).push(s); // other labels are summed per bucket
    }
    const bound = (le) => (le === "+Inf" ? Infinity : parseFloat(le));
    const les = [...byLe.keys()].sort((a, b) => bound(a) - bound(b));
    const merged = les.map((le) => ({ metric: { le }, values: byLe.get(le).flatMap((s) => s.values) }));
    const { xs } = align(merged);
    const at = new Map(xs.map((x, i) => [x, i]));
    const cum = les.map((le) => {
      const y = new Array(xs.length).fill(0);
      for (const s of byLe.get(le)) for (const [t, v] of s.values) { const f = parseFloat(v); if (Number.isFinite(f)) y[at.get(t)] += f; }
      return y;
    });
    // Buckets are cumulative (le: at most); each cell is what fell in that bucket alone.
    const cells = cum.map((y, b) => y.map((v, i) => Math.max(0, b ? v - cum[b - 1][i] : v)));
    const max = Math.max(0, ...cells.flat());
    const rows = les.length, rowH = Math.max(18, Math.min(48, Math.floor(300 / rows)));
    const wrap = el("div", { class: "heatmap" });
    const gutter = el("div", { class: "heatmap-rows" }, [...les].reverse().map((le) =>
      el("div", { "data-heatmap-row": le, style: { height: rowH + "px", lineHeight: rowH + "px" }, title: `bucket le ${le}` }, le)));
    const canvas = el("canvas", { "data-heatmap": "", "aria-label": "heatmap of bucket rates over time" });
    const tip = el("div", { class: "heatmap-tip", hidden: true });
    const axis = el("div", { class: "heatmap-axis muted" });
    wrap.append(gutter, el("div", { class: "heatmap-canvas" }, canvas, tip, axis));
    chartBox.replaceChildren(el("div", { class: "muted note" },
      `Rate per bucket over time (darker: more); ${rows} buckets by upper bound (le), busiest cell ${ferry.fmtNum(max)}/s.`), wrap);
    const width = Math.max(300, chartBox.clientWidth - 100), height = rows * rowH, dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr); canvas.height = Math.round(height * dpr);
    canvas.style.width = width + "px"; canvas.style.height = height + "px";
    const g = canvas.getContext("2d");
    g.scale(dpr, dpr);
    const x0 = r.startNs / 1e9, x1 = r.endNs / 1e9, px = (t) => ((t - x0) / (x1 - x0)) * width;
    const stepS = xs.length > 1 ? xs[1] - xs[0] : (x1 - x0);
    const cellW = Math.max(1, px(x0 + stepS) - px(x0));
    g.fillStyle = "#f3f5f9";
    g.fillRect(0, 0, width, height);
    for (let b = 0; b < rows; b++) {
      const top = (rows - 1 - b) * rowH;
      for (let i = 0; i < xs.length; i++) {
        const v = cells[b][i];
        if (!v || !max) continue;
        const f = Math.sqrt(v / max); // square root: a quiet bucket still shows beside a busy one
        g.fillStyle = `hsl(${50 - 50 * f} 95% ${88 - 52 * f}%)`;
        g.fillRect(px(xs[i]) - cellW / 2, top + 1, cellW + 0.5, rowH - 2);
      }
    }
    for (let k = 0; k <= 4; k++) {
      const t = x0 + ((x1 - x0) * k) / 4;
      axis.append(el("span", { style: { left: (px(t) / width) * 100 + "%" } }, ferry.fmtTime(t * 1e9, false).slice(11)));
    }
    canvas.addEventListener("mousemove", (e) => {
      const box = canvas.getBoundingClientRect();
      const t = x0 + ((e.clientX - box.left) / width) * (x1 - x0);
      let i = 0; while (i < xs.length - 1 && Math.abs(xs[i + 1] - t) < Math.abs(xs[i] - t)) i++;
      const b = rows - 1 - Math.floor((e.clientY - box.top) / rowH);
      if (b < 0 || b >= rows || !xs.length) { tip.hidden = true; return; }
      tip.hidden = false;
      tip.textContent = `${ferry.fmtTime(xs[i] * 1e9, false)} · le ${les[b]} · ${ferry.fmtNum(cells[b][i])}/s`;
      tip.style.left = (e.clientX - box.left + 12) + "px"; tip.style.top = (e.clientY - box.top + 12) + "px";
    });
    canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  }

  loadCatalogue();
  run();
})();
