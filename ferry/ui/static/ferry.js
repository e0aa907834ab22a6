// ferry's UI: what every view shares (API calls, URL state, time range, DOM helpers, charts, keys).
// Each view's script (static/views/<view>.js) fills <main id="view">; the URL holds a view's whole state.
"use strict";
(function () {
  class FerryError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  // GET (or POST a form) and parse JSON (numbers as JS numbers: a view that needs nanoseconds exact,
  // as the logs view's cursors do, reads the text itself); a failure becomes a FerryError in plain words, with the
  // API's own message when it sent one (a bad query names the position, a store problem says so).
  async function request(path, params, form) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v === undefined || v === null || v === "") continue;
      if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x)); else url.searchParams.set(k, v);
    }
    let r;
    try {
      r = await fetch(url, form ? { method: "POST", body: new URLSearchParams(form), headers: headers() } : { headers: headers() });
    } catch (e) {
      throw new FerryError("ferry is not answering (is it running?): " + e.message, 0);
    }
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!r.ok || (body && body.status === "error")) {
      const msg = (body && (body.error || body.message)) || text.trim() || r.statusText;
      const hint = r.status === 504 ? " (the query took too long: narrow the time range or the query)"
        : r.status === 503 ? " (the store is unavailable; retry in a moment)" : "";
      throw new FerryError(msg + hint, r.status);
    }
    return body;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (k === "style" && typeof v === "object") Object.assign(node.style, v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // URL state: every view reads its inputs from the query string and writes them back, so a link
  // reproduces the page.
  const state = {
    get(name, fallback = "") { const v = new URLSearchParams(location.search).get(name); return v === null ? fallback : v; },
    all(name) { return new URLSearchParams(location.search).getAll(name); },
    set(values, push = false) {
      const p = new URLSearchParams(location.search);
      for (const [k, v] of Object.entries(values)) {
        if (v === undefined || v === null || v === "") p.delete(k); else p.set(k, v);
      }
      const url = location.pathname + (p.toString() ? "?" + p.toString() : "");
      (push ? history.pushState : history.replaceState).call(history, null, "", url);
    },
  };

  // Tenant: the URL's `tenant` (a shared link names it), else the one last picked in this browser; none
  // means the server's configured tenant. Every API call names it in X-Scope-OrgID, as Grafana would.
  const TENANT_KEY = "ferry.tenant";
  function storedTenant() { try { return localStorage.getItem(TENANT_KEY) || ""; } catch (_) { return ""; } }
  function keepTenant(t) {
    try { if (t) localStorage.setItem(TENANT_KEY, t); else localStorage.removeItem(TENANT_KEY); } catch (_) { /* private mode */ }
  }
  const urlTenant = new URLSearchParams(location.search).get("tenant");
  if (urlTenant !== null) keepTenant(urlTenant.trim());
  else if (storedTenant()) state.set({ tenant: storedTenant() });  // the URL holds the whole state
  function tenant() { return (state.get("tenant") || "").trim(); }
  function headers() { const t = tenant(); return t ? { "X-Scope-OrgID": t } : {}; }

  // The picker in the top bar, shown once there is a choice: more than one tenant has data, or the
  // page names one. Picking reloads the page for that tenant.
  async function tenantPicker() {
    const slot = document.querySelector("[data-tenant-picker]");
    if (!slot) return;
    let ans;
    try { ans = await request("/api/v1/tenants", { since: "30d" }); } catch (_) { return; }  // the view shows API errors itself
    const current = tenant() || ans.default;
    const names = [...new Set([ans.default, current, ...ans.tenants.map((t) => t.tenant)])].sort();
    if (names.length < 2) return;
    const select = el("select", { "aria-label": "tenant", "data-tenant": "" },
      names.map((n) => el("option", { value: n, selected: n === current }, n === ans.default ? `${n} (default)` : n)));
    select.addEventListener("change", () => {
      const t = select.value === ans.default ? "" : select.value;
      keepTenant(t);
      state.set({ tenant: t });
      location.reload();
    });
    slot.replaceChildren(el("span", { class: "muted" }, "tenant"), select);
    slot.hidden = false;
  }
  document.addEventListener("DOMContentLoaded", tenantPicker);

  // Time: `from`/`to` in the URL are `now`, `now-15m` style, an ISO date, or nanoseconds.
  const UNIT_S = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  function parseTime(text, nowNs) {
    const t = String(text || "").trim();
    if (!t || t === "now") return nowNs;
    let m = /^now-(\d+(?:\.\d+)?)([smhdw])$/.exec(t);
    if (m) return nowNs - Math.round(parseFloat(m[1]) * UNIT_S[m[2]] * 1e9);
    if (/^\d{16,}$/.test(t)) return Number(t);
    const ms = Date.parse(t);
    if (!isNaN(ms)) return ms * 1e6;
    throw new FerryError(`"${t}" is not a time: use now, now-15m, now-2h, an ISO date or nanoseconds`, 400);
  }
  function range(defaultFrom = "now-1h") {
    const now = Date.now() * 1e6;
    const from = state.get("from", defaultFrom), to = state.get("to", "now");
    const startNs = parseTime(from, now), endNs = parseTime(to, now);
    if (startNs >= endNs) throw new FerryError("the start of the time range must be before its end", 400);
    return { from, to, startNs, endNs };
  }
  const PRESETS = [["now-5m", "Last 5 minutes"], ["now-15m", "Last 15 minutes"], ["now-1h", "Last hour"],
    ["now-6h", "Last 6 hours"], ["now-24h", "Last 24 hours"], ["now-7d", "Last 7 days"]];
  // A preset select plus absolute from/to inputs; calls onChange() after writing the URL.
  function timePicker(onChange, defaultFrom = "now-1h") {
    const from = state.get("from", defaultFrom), to = state.get("to", "now");
    const isPreset = to === "now" && PRESETS.some(([v]) => v === from);
    const sel = el("select", { "aria-label": "time range", "data-time-preset": "" },
      PRESETS.map(([v, label]) => el("option", { value: v, selected: isPreset && v === from }, label)),
      el("option", { value: "custom", selected: !isPreset }, "Custom…"));
    const a = el("input", { type: "text", value: from, size: 22, "aria-label": "from", "data-time-from": "" });
    const b = el("input", { type: "text", value: to, size: 22, "aria-label": "to", "data-time-to": "" });
    const custom = el("span", { class: "timepicker", hidden: isPreset }, a, "→", b);
    sel.addEventListener("change", () => {
      if (sel.value === "custom") { custom.hidden = false; return; }
      custom.hidden = true; a.value = sel.value; b.value = "now";
      state.set({ from: sel.value, to: "now" }, true); onChange();
    });
    for (const input of [a, b]) input.addEventListener("change", () => { state.set({ from: a.value, to: b.value }, true); onChange(); });
    return el("span", { class: "timepicker" }, sel, custom);
  }
  function zoomTo(startNs, endNs) {
    state.set({ from: String(Math.round(startNs)), to: String(Math.round(endNs)) }, true);
  }

  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function fmtTime(ns, withMs = true) {
    const d = new Date(Number(ns) / 1e6);
    const s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return withMs ? s + "." + pad(d.getMilliseconds(), 3) : s;
  }
  function fmtDuration(ns) {
    const v = Number(ns);
    if (v < 1e3) return v + " ns";
    if (v < 1e6) return (v / 1e3).toFixed(v < 1e4 ? 1 : 0) + " µs";
    if (v < 1e9) return (v / 1e6).toFixed(v < 1e7 ? 2 : 1) + " ms";
    return (v / 1e9).toFixed(2) + " s";
  }
  function fmtNum(x, digits = 3) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    const a = Math.abs(x);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return x.toExponential(2);
    return Number(x.toPrecision(digits)).toLocaleString();
  }
  // The level's colour class: err/crit/alert/emerg → error, warning → warn, etc.
  function levelClass(level) {
    const l = String(level || "").toLowerCase();
    if (/^(err|error|crit|critical|alert|emerg|fatal|panic)/.test(l)) return "lvl-error";
    if (/^warn/.test(l)) return "lvl-warn";
    if (/^(info|notice|informational)/.test(l)) return "lvl-info";
    if (/^(debug|trace)/.test(l)) return "lvl-debug";
    return "";
  }
  // A stable colour per name (services in waterfalls and charts).
  function colour(name) {
    let h = 0;
    for (const ch of String(name)) h = (h * 31 + ch.codePointAt(0)) >>> 0;
    return `hsl(${h % 360} 62% 48%)`;
  }

  // Show `error` in plain words inside `container` (never a blank panel).
  function showError(container, error) {
    const msg = error instanceof Error ? error.message : String(error);
    container.replaceChildren(el("div", { class: "error", role: "alert" }, msg));
  }

  // A uPlot time-series chart in `container`; `data` is [xs (seconds), ...ys]. Dragging across it
  // calls onZoom(startNs, endNs). Returns the uPlot instance (or a message when uPlot is missing).
  function chart(container, series, data, opts = {}) {
    const width = Math.max(320, container.clientWidth || 800);
    const o = {
      width, height: opts.height || 180, series: [{}, ...series], scales: { x: { time: true } },
      cursor: { drag: { x: true, y: false, setScale: false } },
      legend: { show: opts.legend !== false }, axes: opts.axes,
      hooks: {
        setSelect: [(u) => {
          if (!opts.onZoom || u.select.width < 3) return;
          const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
          u.setSelect({ width: 0, height: 0 }, false);
          opts.onZoom(a * 1e9, b * 1e9);
        }],
      },
      ...(opts.uplot || {}),
    };
    container.replaceChildren();
    return new uPlot(o, data, container);
  }

  // Keys: `/` focuses the query box, Esc closes the open panel (views listen to "ferry:escape" too).
  document.addEventListener("keydown", (e) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test((e.target && e.target.tagName) || "");
    if (e.key === "/" && !typing) {
      const q = document.querySelector("[data-query]");
      if (q) { e.preventDefault(); q.focus(); }
    } else if (e.key === "Escape") {
      document.querySelectorAll(".side-panel").forEach((p) => p.remove());
      document.dispatchEvent(new CustomEvent("ferry:escape"));
    }
  });

  window.ferry = {
    FerryError, api: (path, params) => request(path, params), headers, tenant, post: (path, form, params) => request(path, params, form),
    el, state, parseTime, range, timePicker, zoomTo, fmtTime, fmtDuration, fmtNum, levelClass, colour,
    showError, chart, view: () => document.getElementById("view"),
  };
})();
