// One dashboard (/ui/dashboards/{name}): variables as selects, the time picker, and rows of panels that
// load in parallel; a panel's failure shows in that panel in words while the others still render.
"use strict";
(function () {
  const { el, api, state } = ferry;
  const root = ferry.view();
  const name = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const ALL = "$__all";
  let def = null; // the dashboard as its file says (variables, default time)
  let options = {}; // variable name -> [values]
  let timer = null;

  // ---- values and units ----
  const BYTES = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  function fmtUnit(v, unit) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    switch (unit) {
      case "bytes": {
        let i = 0, x = Math.abs(v);
        while (x >= 1024 && i < BYTES.length - 1) { x /= 1024; i++; }
        return (v < 0 ? "-" : "") + Number(x.toPrecision(3)) + " " + BYTES[i];
      }
      case "s": return v === 0 ? "0 s" : ferry.fmtDuration(v * 1e9);
      case "ms": return v === 0 ? "0 ms" : ferry.fmtDuration(v * 1e6);
      case "percent": return ferry.fmtNum(v) + " %";
      case "ops/s": return ferry.fmtNum(v) + "/s";
      default: return ferry.fmtNum(v);
    }
  }
  function thresholdColour(v, thresholds) {
    let c = null;
    for (const t of [...(thresholds || [])].sort((a, b) => a.value - b.value)) if (v >= t.value) c = t.colour;
    return c;
  }
  function seriesName(metric, legend) {
    if (legend) return legend.replace(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g, (_, k) => metric[k] ?? "");
    const labels = Object.entries(metric).filter(([k]) => k !== "__name__");
    if (!labels.length) return metric.__name__ || "value";
    return (metric.__name__ || "") + "{" + labels.map(([k, v]) => `${k}="${v}"`).join(", ") + "}";
  }
  const num = (x) => (x === "NaN" ? NaN : parseFloat(x));

  // ---- queries ----
  function promRange(q, d) {
    const path = q.language === "logql" ? "/loki/api/v1/query_range" : "/prometheus/api/v1/query_range";
    const [start, end] = q.language === "logql" ? [d.start_ns, d.end_ns] : [d.start_ns / 1e9, d.end_ns / 1e9];
    return api(path, { query: q.expr, start, end, step: d.step_s }).then((r) => r.data.result);
  }
  function promInstant(q, d) {
    return api("/prometheus/api/v1/query", { query: q.expr, time: d.end_ns / 1e9 }).then((r) => r.data.result);
  }

  // ---- panel renderers: each fills `body` or throws ----
  const render = {
    async timeseries(p, body, d) {
      const result = await promRange(p.query, d);
      if (!result.length) return empty(body);
      const xs = [...new Set(result.flatMap((s) => s.values.map((v) => v[0])))].sort((a, b) => a - b);
      const at = new Map(xs.map((x, i) => [x, i]));
      const ys = result.map((s) => {
        const y = new Array(xs.length).fill(null);
        for (const [t, v] of s.values) y[at.get(t)] = num(v);
        return y;
      });
      const series = result.map((s) => {
        const label = seriesName(s.metric, p.query.legend);
        return { label, stroke: ferry.colour(label), width: 1.5, value: (u, v) => fmtUnit(v, p.unit) };
      });
      const chartBox = el("div", { class: "dash-chart" });
      body.replaceChildren(chartBox);
      ferry.chart(chartBox, series, [xs, ...ys], {
        height: 200,
        axes: [{}, { size: 70, values: (u, vals) => vals.map((v) => fmtUnit(v, p.unit)) }],
        onZoom: (a, b) => { ferry.zoomTo(a, b); load(); },
      });
    },
    async stat(p, body, d) {
      const result = await promInstant(p.query, d);
      if (!result.length) return empty(body);
      body.replaceChildren(el("div", { class: "dash-stats" }, result.slice(0, 6).map((s) => {
        const v = num(s.value[1]);
        const colour = thresholdColour(v, p.thresholds);
        return el("div", { class: "dash-stat" },
          el("div", { class: "dash-stat-value", "data-stat-value": String(v), style: colour ? { color: colour } : null },
            fmtUnit(v, p.unit)),
          result.length > 1 ? el("div", { class: "dash-stat-label" }, seriesName(s.metric, p.query.legend)) : null);
      })));
    },
    async table(p, body, d) {
      const result = await promInstant(p.query, d);
      if (!result.length) return empty(body);
      const keys = [...new Set(result.flatMap((s) => Object.keys(s.metric)))].filter((k) => k !== "__name__").sort();
      body.replaceChildren(el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, keys.map((k) => el("th", {}, k)), el("th", { class: "num" }, "value"))),
        el("tbody", {}, result.slice(0, p.query.limit).map((s) => el("tr", {},
          keys.map((k) => el("td", {}, s.metric[k] ?? "")),
          el("td", { class: "num" }, fmtUnit(num(s.value[1]), p.unit)))))));
    },
    async logs(p, body, d) {
      let rows;
      if (p.query.language === "logql") {
        const r = await api("/loki/api/v1/query_range", { query: p.query.expr, start: d.start_ns, end: d.end_ns,
          limit: p.query.limit, direction: "backward" });
        if (r.data.resultType !== "streams") throw new Error("a logs panel needs a LogQL log query, not a metric query");
        rows = r.data.result.flatMap((s) => s.values.map(([t, line]) => ({
          time_ns: t, service: s.stream.service_name || s.stream.job || "", level: s.stream.level || s.stream.detected_level || "", body: line })));
        rows.sort((a, b) => (BigInt(b.time_ns) > BigInt(a.time_ns) ? 1 : -1));
        rows = rows.slice(0, p.query.limit);
      } else {
        rows = (await api("/api/v1/logs", { q: p.query.expr, start: d.start_ns, end: d.end_ns, limit: p.query.limit })).logs;
      }
      if (!rows.length) return empty(body);
      body.replaceChildren(el("div", { class: "dash-logs" }, rows.map((r) => el("div", { class: "dash-log" },
        el("span", { class: "dash-log-time" }, ferry.fmtTime(r.time_ns)),
        el("span", { class: "dash-log-level " + ferry.levelClass(r.level) }, r.level || ""),
        el("span", { class: "dash-log-service" }, r.service || ""),
        el("span", { class: "dash-log-body" }, r.body)))));
    },
    async traces(p, body, d) {
      const r = await api("/tempo/api/search", { q: p.query.expr, start: Math.floor(d.start_ns / 1e9),
        end: Math.ceil(d.end_ns / 1e9), limit: p.query.limit });
      if (!r.traces.length) return empty(body);
      body.replaceChildren(el("table", { class: "grid" },
        el("thead", {}, el("tr", {}, el("th", {}, "start"), el("th", {}, "service"), el("th", {}, "operation"),
          el("th", { class: "num" }, "duration"))),
        el("tbody", {}, r.traces.map((t) => el("tr", {},
          el("td", {}, el("a", { href: "/ui/traces/" + t.traceID }, ferry.fmtTime(t.startTimeUnixNano, false))),
          el("td", {}, t.rootServiceName || ""), el("td", {}, t.rootTraceName || ""),
          el("td", { class: "num" }, ferry.fmtDuration((t.durationMs || 0) * 1e6)))))));
    },
    async heatmap(p, body, d) {
      const result = await promRange(p.query, d);
      if (!result.length) return empty(body);
      const le = (s) => (s.metric.le === "+Inf" ? Infinity : parseFloat(s.metric.le));
      const buckets = result.filter((s) => s.metric.le !== undefined).sort((a, b) => le(a) - le(b));
      if (!buckets.length) throw new Error("a heatmap needs histogram buckets: a query keeping the le label, e.g. sum by (le) (rate(x_bucket[5m]))");
      const xs = [...new Set(buckets.flatMap((s) => s.values.map((v) => v[0])))].sort((a, b) => a - b);
      const at = new Map(xs.map((x, i) => [x, i]));
      const cum = buckets.map((s) => { const y = new Array(xs.length).fill(0); for (const [t, v] of s.values) y[at.get(t)] = num(v) || 0; return y; });
      const cells = cum.map((y, b) => y.map((v, i) => Math.max(0, v - (b ? cum[b - 1][i] : 0))));
      const max = Math.max(...cells.flat(), 0);
      const canvas = el("canvas", { class: "dash-heatmap" });
      body.replaceChildren(canvas);
      const W = Math.max(300, body.clientWidth), H = 200, left = 70, bottom = 18;
      const dpr = window.devicePixelRatio || 1;
      canvas.width = W * dpr; canvas.height = H * dpr; canvas.style.width = W + "px"; canvas.style.height = H + "px";
      const g = canvas.getContext("2d");
      g.scale(dpr, dpr);
      const cw = (W - left) / xs.length, ch = (H - bottom) / buckets.length;
      for (let b = 0; b < buckets.length; b++) {
        for (let i = 0; i < xs.length; i++) {
          const v = cells[b][i];
          if (!v || !max) continue;
          g.fillStyle = `hsl(${210 - 190 * (v / max)} 80% ${70 - 30 * (v / max)}%)`;
          g.fillRect(left + i * cw, H - bottom - (b + 1) * ch, Math.ceil(cw), Math.ceil(ch));
        }
      }
      g.fillStyle = getComputedStyle(body).color; g.font = "11px sans-serif"; g.textBaseline = "middle";
      const every = Math.ceil(buckets.length / 8);
      buckets.forEach((s, b) => { if (b % every === 0) g.fillText("≤ " + (le(s) === Infinity ? "+Inf" : fmtUnit(le(s), p.unit)), 2, H - bottom - (b + 0.5) * ch); });
      g.textBaseline = "bottom";
      g.fillText(ferry.fmtTime(xs[0] * 1e9, false), left, H);
      const last = ferry.fmtTime(xs[xs.length - 1] * 1e9, false);
      g.fillText(last, W - g.measureText(last).width - 2, H);
      canvas.dataset.cells = String(cells.flat().filter((v) => v > 0).length);
    },
  };

  function empty(body) { body.replaceChildren(el("p", { class: "empty" }, "no data in this time range")); }

  // ---- variables ----
  async function loadOptions(d) {
    const out = {};
    await Promise.all(def.variables.map(async (v) => {
      if (v.values) { out[v.name] = v.values; return; }
      try {
        const r = await api(`/prometheus/api/v1/label/${encodeURIComponent(v.label_name)}/values`,
          { "match[]": v.metric || undefined, start: d.start_ns / 1e9, end: d.end_ns / 1e9 });
        out[v.name] = r.data;
      } catch (e) { out[v.name] = []; }
    }));
    return out;
  }
  function varParams() {
    const p = {};
    for (const v of def.variables) {
      const vals = state.all("var-" + v.name);
      if (vals.length) p["var-" + v.name] = vals;
    }
    return p;
  }
  function setVar(v, values) {
    const p = new URLSearchParams(location.search);
    p.delete("var-" + v.name);
    values.forEach((x) => p.append("var-" + v.name, x));
    history.pushState(null, "", location.pathname + "?" + p.toString());
    load(false);
  }
  function variableSelect(v, current) {
    const opts = options[v.name] || [];
    const chosen = new Set(current);
    const sel = el("select", { "aria-label": v.label || v.name, "data-variable": v.name, multiple: v.multi, size: v.multi ? Math.min(4, opts.length + (v.include_all ? 1 : 0)) || 1 : null },
      v.include_all ? el("option", { value: ALL, selected: chosen.has(ALL) }, "All") : null,
      opts.map((o) => el("option", { value: o, selected: chosen.has(o) }, o)),
      current.filter((c) => c !== ALL && !opts.includes(c)).map((c) => el("option", { value: c, selected: true }, c)));
    sel.addEventListener("change", () => setVar(v, [...sel.selectedOptions].map((o) => o.value)));
    return el("label", { class: "dash-var" }, el("span", {}, v.label || v.name), sel);
  }

  // ---- the page ----
  function panelBox(p) {
    const body = el("div", { class: "dash-body" }, el("p", { class: "empty" }, "loading…"));
    const box = el("section", { class: "panel dash-panel", "data-panel-type": p.type, "data-state": "loading",
      style: { gridColumn: `span ${p.width}` } },
      el("h3", { title: p.description || p.query.expr }, p.title), body);
    return { box, body };
  }

  async function load(withOptions = true) {
    clearInterval(timer);
    const t0 = performance.now();
    document.body.dataset.rendered = "";
    let d;
    try {
      if (!def) def = await api(`/api/v1/ui/dashboards/${encodeURIComponent(name)}`);
      const range = ferry.range(def.time.from);
      const params = { start: String(range.startNs), end: String(range.endNs), ...varParams() };
      d = await api(`/api/v1/ui/dashboards/${encodeURIComponent(name)}`, params);
      if (withOptions) options = await loadOptions(d);
    } catch (e) {
      root.replaceChildren(el("h1", {}, name));
      const box = el("div", {});
      root.append(box);
      ferry.showError(box, e);
      return;
    }
    document.title = d.title + " · ferry";
    const toolbar = el("div", { class: "toolbar dash-toolbar" },
      d.variables.map((v) => variableSelect(v, v.current)),
      el("span", { class: "grow" }),
      ferry.timePicker(() => load(), d.time.from),
      el("button", { type: "button", onclick: () => load() }, "Refresh"));
    const jobs = [];
    const rows = d.rows.map((row) => {
      const grid = el("div", { class: "dash-grid" });
      for (const p of row.panels) {
        const { box, body } = panelBox(p);
        grid.append(box);
        jobs.push({ p, box, body });
      }
      return el("div", { class: "dash-row" }, row.title ? el("h2", {}, row.title) : null, grid);
    });
    root.replaceChildren(
      el("div", { class: "dash-head" }, el("h1", {}, d.title),
        el("a", { href: "/ui/dashboards", class: "dash-back" }, "all dashboards"),
        d.error ? el("div", { class: "error", role: "alert" }, "The file has an error; showing its last good version: " + d.error) : null),
      toolbar, ...rows);
    // Every panel at once: the slowest query decides when the page is complete, not the sum.
    await Promise.all(jobs.map(async ({ p, box, body }) => {
      try {
        await render[p.type](p, body, d);
        box.dataset.state = body.querySelector(".empty") ? "empty" : "ok";
      } catch (e) {
        box.dataset.state = "error";
        ferry.showError(body, e);
      }
    }));
    window.ferryDashboardMs = performance.now() - t0;
    document.body.dataset.rendered = String(jobs.length);
    if (d.refresh_s && state.get("to", "now") === "now") timer = setInterval(() => load(false), d.refresh_s * 1000);
  }

  window.addEventListener("popstate", () => load(false));
  load();
})();
