// The logs explorer (the start page): query box with autocomplete and history, histogram by level,
// facets, result rows that expand and filter, live tail, context of a line, downloads and paging.
"use strict";
(function () {
  const { el, state } = ferry;
  const view = ferry.view();
  const PAGE = 100, TAIL_MS = 1000, MAX_ROWS = 5000, HISTORY = "ferry.logs.history";
  const FACETS = ["service", "level", "host", "source"];
  // Bottom to top of the stacked histogram.
  const LEVELS = [["error", "#c62828"], ["warn", "#d08400"], ["info", "#4a7fd4"], ["debug", "#9aa3af"], ["other", "#c9ced6"]];
  const KEY_RE = /^[A-Za-z_@][A-Za-z0-9_.\-/@]*$/;

  // JSON GET keeping nanosecond integers exact (as text): a double holds only 15-16 digits.
  async function get(path, params) {
    const url = new URL(path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v === undefined || v === null || v === "") continue;
      if (Array.isArray(v)) v.forEach((x) => url.searchParams.append(k, x)); else url.searchParams.set(k, v);
    }
    let r;
    try { r = await fetch(url, { headers: ferry.headers() }); } catch (e) { throw new ferry.FerryError("ferry is not answering (is it running?): " + e.message, 0); }
    const text = await r.text();
    let body = null;
    try {
      body = text ? JSON.parse(text, (k, v, c) => (typeof v === "number" && !Number.isSafeInteger(v) && c && /^\d+$/.test(c.source) ? c.source : v)) : null;
    } catch (_) { body = null; }
    if (!r.ok) {
      const hint = r.status === 504 ? " (the query took too long: narrow the time range or the query)" : "";
      throw new ferry.FerryError(((body && body.error) || text.trim() || r.statusText) + hint, r.status);
    }
    return body;
  }

  // --- query text helpers ---
  function quote(value) {
    const v = String(value);
    return /^[^\s()"*<>=\\]+$/.test(v) ? v : '"' + v.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  }
  // The words and phrases of a query that select body text (not fields, not negated): what to <mark>.
  function highlights(q) {
    const out = [];
    const re = /(-|NOT\s+)?("(?:[^"\\]|\\.)*"|[^\s()"]+)/g;
    let m;
    while ((m = re.exec(q))) {
      let t = m[2];
      if (m[1] || /^(AND|OR|NOT)$/.test(t)) continue;
      if (t.startsWith('"')) { t = t.slice(1, -1).replace(/\\(["\\])/g, "$1"); out.push(t); continue; }
      const f = /^([A-Za-z_@][A-Za-z0-9_.\-/@]*):(.*)$/.exec(t);
      if (f) { if (f[1].toLowerCase() !== "body") continue; t = f[2].replace(/^"|"$/g, ""); }
      t = t.replace(/\*$/, "");
      if (t && t !== "*") out.push(t);
    }
    return out;
  }
  function marked(text, terms) {
    if (!terms.length) return [text];
    const re = new RegExp(terms.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).sort((a, b) => b.length - a.length).join("|"), "gi");
    const out = [];
    let last = 0, m;
    while ((m = re.exec(text))) {
      if (!m[0]) { re.lastIndex++; continue; }
      if (m.index > last) out.push(text.slice(last, m.index));
      out.push(el("mark", {}, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }
  const levelGroup = (lvl) => (ferry.levelClass(lvl).replace("lvl-", "") || "other");

  // --- page skeleton ---
  const input = el("input", { type: "search", class: "query", "data-query": "", placeholder: 'search: words, "a phrase", level:error service:api -host:db1   (press / to focus)', "aria-label": "query", autocomplete: "off", spellcheck: "false" });
  const ac = el("ul", { class: "ac", role: "listbox", hidden: true });
  const help = el("div", { class: "popover logs-help", hidden: true });
  const dl = el("dl");
  for (const [k, v] of [["timeout", "a word (any case; word* is a prefix)"], ['"connection reset"', "an exact phrase (case-sensitive)"],
    ["level:error", "a field; also service, host, source, trace_id or any attribute"],
    ["level:>=warn  http.status_code:>=500", "comparisons"], ["user:*  path:/api*", "present / prefix"],
    ["-host:db1  NOT debug", "leave out"], ["a OR b   (a OR b) c", "either / grouping; terms are ANDed"]]) {
    dl.append(el("dt", { class: "mono" }, k), el("dd", {}, v));
  }
  help.replaceChildren(el("h3", {}, "Search syntax"), dl, el("p", { class: "muted" }, "Enter runs the query; ↑/↓ and Tab pick a suggestion; Esc closes."));
  const helpBtn = el("button", { type: "button", title: "search syntax", "aria-label": "search syntax", onclick: () => { help.hidden = !help.hidden; } }, "?");
  const liveBtn = el("button", { type: "button", "aria-pressed": "false", "data-live": "", title: "live tail (Esc stops)" }, "▶ Live");
  const dlJson = el("button", { type: "button", "data-download": "ndjson" }, "NDJSON");
  const dlCsv = el("button", { type: "button", "data-download": "csv" }, "CSV");
  let picker = ferry.timePicker(() => run());
  const toolbar = el("div", { class: "toolbar" },
    el("span", { class: "qwrap" }, input, ac, help), helpBtn,
    el("button", { type: "button", class: "primary", onclick: () => run(true) }, "Search"), picker, liveBtn,
    el("span", { class: "muted" }, "download"), dlJson, dlCsv);
  const notes = el("div", { class: "notes" });
  const totalEl = el("strong", { "data-total": "" }, "…");
  const errLink = el("a", { class: "pivot", "data-errors-link": "", hidden: true }, "errors in this range → traces");
  const chartBox = el("div", { class: "hist-chart" });
  const hist = el("div", { class: "panel hist" }, el("div", { class: "hist-head" }, totalEl, el("span", { class: "muted", "data-shown": "" }), el("span", { class: "grow" }), errLink), chartBox);
  const facetsBox = el("aside", { class: "facets panel" });
  const rowsBox = el("div", { class: "rows", "data-rows": "" });
  const more = el("button", { type: "button", class: "more", hidden: true, onclick: () => loadMore() }, "Load more");
  const results = el("section", { class: "results" }, rowsBox, more);
  view.replaceChildren(toolbar, notes, hist, el("div", { class: "logs-body" }, facetsBox, results));

  // --- state of the current search ---
  let gen = 0, rows = [], cursor = null, terms = [], fields = null, fieldsKey = "", fieldsPromise = null;
  const seen = new Set();
  const rowKey = (r) => `${r.time_ns}|${r.ingest_ns}|${r.service}|${r.body}`;

  function rangeParams() {
    const r = ferry.range();
    return { r, p: { start: String(Math.round(r.startNs)), end: r.to === "now" ? undefined : String(Math.round(r.endNs)) } };
  }

  async function run(push = false) {
    const q = input.value.trim();
    if (push) remember(q);
    state.set({ q }, push);
    hideAc(); help.hidden = true;
    const my = ++gen;
    terms = highlights(q);
    notes.replaceChildren();
    let rp;
    try { rp = rangeParams(); } catch (e) { return fail(e); }
    const { r, p } = rp;
    rowsBox.classList.add("stale"); facetsBox.classList.add("stale");
    more.hidden = true;
    const search = get("/api/v1/logs", { q, ...p, limit: PAGE });
    const counts = histogram(q, r, p, my);
    const facets = loadFacets(q, r, p, my);
    let ans;
    try { ans = await search; } catch (e) { if (my === gen) fail(e); return; }
    if (my !== gen) return;
    rows = []; seen.clear(); rowsBox.replaceChildren(); rowsBox.classList.remove("stale");
    addRows(ans.logs, "end");
    cursor = ans.cursor;
    more.hidden = !cursor;
    for (const w of ans.warnings || []) notes.append(el("div", { class: "warning" }, w));
    if (!ans.logs.length) rowsBox.append(el("p", { class: "empty" }, "No lines match in this time range."));
    await Promise.allSettled([counts, facets]);
    if (live) startTail();
  }

  function fail(e) {
    ferry.showError(notes, e);
    rowsBox.replaceChildren(); chartBox.replaceChildren(); facetsBox.replaceChildren();
    rowsBox.classList.remove("stale"); facetsBox.classList.remove("stale");
    totalEl.textContent = "–"; more.hidden = true; errLink.hidden = true;
  }

  async function loadMore() {
    if (!cursor) return;
    const my = gen;
    more.disabled = true;
    try {
      const { p } = rangeParams();
      const ans = await get("/api/v1/logs", { q: input.value.trim(), ...p, limit: PAGE, cursor });
      if (my !== gen) return;
      addRows(ans.logs, "end");
      cursor = ans.cursor; more.hidden = !cursor;
    } catch (e) { ferry.showError(notes, e); } finally { more.disabled = false; }
  }

  // --- result rows ---
  function addRows(list, where) {
    const nodes = [];
    for (const r of list) {
      const k = rowKey(r);
      if (seen.has(k)) continue;
      seen.add(k);
      nodes.push([r, rowNode(r)]);
    }
    if (where === "start") {
      nodes.reverse();
      rows.unshift(...nodes.map((n) => n[0]));
      rowsBox.querySelector(".empty")?.remove();
      rowsBox.prepend(...nodes.map((n) => n[1]));
      while (rows.length > MAX_ROWS) { rows.pop(); rowsBox.lastChild.remove(); }
    } else {
      rows.push(...nodes.map((n) => n[0]));
      rowsBox.append(...nodes.map((n) => n[1]));
    }
    view.querySelector("[data-shown]").textContent = ` · showing ${rows.length}`;
  }

  function rowNode(r, compact = false) {
    const lc = ferry.levelClass(r.level);
    const line = el("div", { class: "line" },
      el("span", { class: "t mono" }, ferry.fmtTime(r.time_ns)),
      el("span", { class: "lvl " + lc }, r.level || "–"),
      el("span", { class: "svc", style: { color: ferry.colour(r.service) } }, r.service),
      el("span", { class: "body mono" }, marked(String(r.body), terms)),
      r.trace_id ? el("a", { class: "trace-link", href: "/ui/traces/" + r.trace_id, title: "open trace " + r.trace_id, "data-trace": r.trace_id }, "trace") : null);
    const node = el("div", { class: "row " + lc, "data-row": "" }, line);
    if (compact) return node;
    line.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      const open = node.querySelector(".detail");
      if (open) { open.remove(); node.classList.remove("open"); return; }
      node.classList.add("open");
      node.append(detail(r));
    });
    return node;
  }

  function detail(r) {
    const kv = el("div", { class: "kv" });
    const pair = (label, key, value, extra) => {
      const v = String(value ?? "");
      const ok = key && v !== "" && KEY_RE.test(key);
      kv.append(el("span", { class: "k" }, label),
        el("span", { class: "v" },
          ok ? el("button", { type: "button", class: "val", "data-key": key, title: `add ${key}:${v} (alt/shift-click: exclude)`,
            onclick: (e) => addFilter(key, v, e.altKey || e.shiftKey) }, v) : el("span", {}, v),
          ok ? el("button", { type: "button", class: "neg", title: `exclude ${key}:${v}`, "aria-label": `exclude ${key}:${v}`, onclick: () => addFilter(key, v, true) }, "−") : null,
          extra || null));
    };
    pair("time", null, `${ferry.fmtTime(r.time_ns)}  (${r.time_ns} ns)`);
    // A host or service value also pivots to every signal of that target (the target view), same window.
    const signals = (kind, v) => (v ? el("a", { class: "target-link", "data-target-link": kind, title: `every signal of ${kind} ${v}`,
      href: "/ui/target?" + new URLSearchParams({ kind, name: v, from: state.get("from", "now-1h"), to: state.get("to", "now") }) }, " all signals →") : null);
    pair("service", "service", r.service, signals("service", r.service));
    pair("level", "level", r.level);
    pair("host", "host", (r.resource || {})["host.name"], signals("host", (r.resource || {})["host.name"]));
    pair("source", "source", r.source);
    if (r.trace_id) pair("trace_id", "trace_id", r.trace_id, el("a", { href: "/ui/traces/" + r.trace_id, class: "trace-link" }, " open trace →"));
    if (r.span_id) pair("span_id", "span_id", r.span_id);
    const skip = new Set(["service.name", "host.name"]);
    for (const [k, v] of Object.entries(r.resource || {}).sort()) if (!skip.has(k)) pair("resource." + k, k, v);
    for (const [k, v] of Object.entries(r.attributes || {}).sort()) pair(k, k, v);
    const actions = el("div", { class: "actions" },
      el("button", { type: "button", "data-context": "", onclick: () => openContext(r) }, "Context"),
      el("button", { type: "button", onclick: () => navigator.clipboard && navigator.clipboard.writeText(String(r.body)) }, "Copy line"));
    return el("div", { class: "detail" }, kv, actions);
  }

  function addFilter(key, value, negate) {
    const term = (negate ? "-" : "") + key + ":" + quote(value);
    const q = input.value.trim();
    if (!q.split(/\s+/).includes(term)) input.value = (q ? q + " " : "") + term;
    run(true);
  }

  // --- histogram ---
  const STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
  async function histogram(q, r, p, my) {
    const endNs = r.to === "now" ? Date.now() * 1e6 : r.endNs;
    const spanS = (endNs - r.startNs) / 1e9;
    const step = STEPS.find((s) => spanS / s <= 90) || 604800;
    let ans;
    try { ans = await get("/api/v1/logs/count", { q, ...p, by: "level", step }); } catch (e) { if (my === gen) ferry.showError(chartBox, e); return; }
    if (my !== gen) return;
    const first = Math.floor(r.startNs / 1e9 / step) * step;
    const n = Math.max(1, Math.ceil((endNs / 1e9 - first) / step));
    const xs = Array.from({ length: n }, (_, i) => first + i * step);
    const raw = LEVELS.map(() => new Array(n).fill(0));
    let total = 0;
    for (const g of ans.groups) {
      const i = Math.round((Number(g.bucket) - first) / step);
      const c = Number(g.count);
      total += c;
      if (i < 0 || i >= n) continue;
      raw[LEVELS.findIndex(([name]) => name === levelGroup(g.key))][i] += c;
    }
    totalEl.textContent = `${total.toLocaleString()} ${total === 1 ? "line" : "lines"}`;
    totalEl.dataset.count = String(total);
    const errors = raw[0].reduce((a, b) => a + b, 0);
    errLink.hidden = !errors;
    errLink.href = tracesLink(r.startNs, endNs);
    // Stacked: each series is the sum of its level and those below it, drawn top layer first.
    const cum = [];
    raw.forEach((arr, k) => cum.push(arr.map((v, i) => v + (k ? cum[k - 1][i] : 0))));
    const order = LEVELS.map((_, k) => k).reverse();
    const bars = uPlot.paths && uPlot.paths.bars ? uPlot.paths.bars({ size: [0.9, 64] }) : undefined;
    const series = order.map((k) => ({ label: LEVELS[k][0], fill: LEVELS[k][1], stroke: LEVELS[k][1], width: 0, paths: bars, points: { show: false },
      value: (u, v, si, idx) => (idx === null || idx === undefined ? "–" : raw[k][idx]) }));
    let down = null;
    const u = ferry.chart(chartBox, series, [xs, ...order.map((k) => cum[k])], {
      height: 140,
      onZoom: (a, b) => { ferry.zoomTo(a, b); replacePicker(); run(); },
      uplot: { scales: { x: { time: true, range: [first, first + n * step] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } } },
    });
    // A click (not a drag) on a bucket's error segment opens the traces with errors in that bucket.
    u.over.addEventListener("mousedown", (e) => { down = e.clientX; });
    u.over.addEventListener("click", (e) => {
      if (down === null || Math.abs(e.clientX - down) > 3) return;
      const i = u.cursor.idx;
      if (i === null || i === undefined || !raw[0][i]) return;
      if (u.posToVal(u.cursor.top, "y") <= raw[0][i]) location.href = tracesLink(xs[i] * 1e9, (xs[i] + step) * 1e9);
    });
    Object.assign(chartBox, { _uplot: u, _errors: raw[0], _xs: xs }); // for tests and the console
    u.over.title = "drag to zoom; click a red (error) bar to see traces with errors then";
  }
  const tracesLink = (a, b) => `/ui/traces?status=error&from=${Math.round(a)}&to=${Math.round(b)}`;
  function replacePicker() {
    const np = ferry.timePicker(() => run());
    picker.replaceWith(np); picker = np;
  }

  // --- facets ---
  async function loadFields(p) {
    const k = JSON.stringify(p);
    if (k !== fieldsKey) { fieldsKey = k; fieldsPromise = get("/api/v1/fields", p).then((a) => (fields = a.fields)); }
    return fieldsPromise;
  }
  async function loadFacets(q, r, p, my) {
    let attrs = [];
    try {
      const fl = await loadFields(p);
      attrs = fl.filter((f) => f.kind !== "column" && f.distinct_values > 1 && KEY_RE.test(f.field)).slice(0, 4).map((f) => f.field);
    } catch (_) { /* facets of the columns still help */ }
    let ans;
    try { ans = await get("/api/v1/ui/logs/facets", { q, ...p, key: [...FACETS, ...attrs], limit: 8 }); } catch (e) { if (my === gen) { facetsBox.classList.remove("stale"); ferry.showError(facetsBox, e); } return; }
    if (my !== gen) return;
    facetsBox.replaceChildren(); facetsBox.classList.remove("stale");
    for (const [key, values] of Object.entries(ans.facets)) {
      if (!values.length) continue;
      facetsBox.append(el("div", { class: "facet", "data-facet": key }, el("h3", {}, key),
        values.map((v) => el("button", { type: "button", class: "fv", "data-value": v.value, title: `add ${key}:${v.value} (alt/shift-click: exclude)`,
          onclick: (e) => addFilter(key, v.value, e.altKey || e.shiftKey) },
        el("span", { class: "fvv " + (key === "level" ? ferry.levelClass(v.value) : "") }, v.value), el("span", { class: "num", "data-count": "" }, v.count.toLocaleString())))));
    }
    if (!facetsBox.children.length) facetsBox.append(el("p", { class: "muted" }, "No fields to show."));
  }

  // --- live tail ---
  let live = false, tailTimer = null, tailGen = 0, tailCursor = null;
  function setLive(on) {
    live = on;
    liveBtn.setAttribute("aria-pressed", String(on));
    liveBtn.textContent = on ? "■ Live" : "▶ Live";
    if (on) startTail(); else { tailGen++; clearTimeout(tailTimer); }
  }
  function startTail() {
    const my = ++tailGen;
    clearTimeout(tailTimer);
    tailCursor = null;
    const poll = async () => {
      try {
        const ans = await get("/api/v1/logs/tail", { q: input.value.trim(), after: tailCursor ?? undefined });
        if (my !== tailGen) return;
        tailCursor = ans.cursor;
        if (ans.logs.length) addRows(ans.logs, "start");
      } catch (e) { if (my === tailGen) { ferry.showError(notes, e); setLive(false); } return; }
      if (my === tailGen) tailTimer = setTimeout(poll, TAIL_MS);
    };
    poll();
  }
  liveBtn.addEventListener("click", () => setLive(!live));

  // --- context of one line ---
  async function openContext(r) {
    document.querySelectorAll(".side-panel").forEach((x) => x.remove());
    const host = (r.resource || {})["host.name"] || "";
    const body = el("div", { class: "ctx-rows" }, el("p", { class: "loading" }, "Loading…"));
    const panel = el("div", { class: "side-panel", "data-context-panel": "" },
      el("button", { type: "button", class: "close", "aria-label": "close", onclick: () => panel.remove() }, "×"),
      el("h3", {}, "Context"), el("p", { class: "muted" }, `${r.service || "(no service)"} on ${host || "(no host)"}: the lines before and after`), body);
    document.body.append(panel);
    try {
      const ans = await get("/api/v1/ui/logs/context", { time_ns: r.time_ns, service: r.service, host, n: 10 });
      const me = rowKey(r);
      body.replaceChildren(...[...ans.before, ...ans.after].map((x) => {
        const n = rowNode(x, true);
        if (rowKey(x) === me) n.classList.add("anchor");
        return n;
      }));
      body.querySelector(".anchor")?.scrollIntoView({ block: "center" });
    } catch (e) { ferry.showError(body, e); }
  }

  // --- downloads ---
  function exact(x) { return typeof x === "string" && /^\d{16,}$/.test(x) && JSON.rawJSON ? JSON.rawJSON(x) : x; }
  function cleanRow(r) {
    const o = {};
    for (const [k, v] of Object.entries(r)) if (!k.startsWith("_")) o[k] = k.endsWith("_ns") ? exact(v) : v;
    return o;
  }
  function csvCell(v) {
    const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\n\r]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function save(name, type, text) {
    const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }
  dlJson.addEventListener("click", () => save("ferry-logs.ndjson", "application/x-ndjson", rows.map((r) => JSON.stringify(cleanRow(r)) + "\n").join("")));
  dlCsv.addEventListener("click", () => {
    const cols = ["time", "time_ns", "level", "service", "host", "source", "trace_id", "span_id", "body", "attributes", "resource"];
    const lines = rows.map((r) => [new Date(Number(r.time_ns) / 1e6).toISOString(), r.time_ns, r.level, r.service, (r.resource || {})["host.name"],
      r.source, r.trace_id, r.span_id, r.body, r.attributes, r.resource].map(csvCell).join(","));
    save("ferry-logs.csv", "text/csv", [cols.join(","), ...lines].join("\r\n") + "\r\n");
  });

  // --- history and autocomplete ---
  function history() { try { return JSON.parse(localStorage.getItem(HISTORY) || "[]"); } catch (_) { return []; } }
  function remember(q) {
    if (!q) return;
    try { localStorage.setItem(HISTORY, JSON.stringify([q, ...history().filter((h) => h !== q)].slice(0, 20))); } catch (_) { /* private mode */ }
  }
  let acItems = [], acSel = -1;
  function hideAc() { ac.hidden = true; acItems = []; acSel = -1; }
  function showAc(items) {
    acItems = items.slice(0, 10); acSel = -1;
    ac.replaceChildren(...acItems.map((it, i) => el("li", { role: "option", "data-ac": it.insert, onmousedown: (e) => { e.preventDefault(); accept(i); } },
      el("span", { class: "mono" }, it.label), it.note ? el("span", { class: "muted" }, " " + it.note) : null)));
    ac.hidden = !acItems.length;
  }
  function tokenAt() {
    const pos = input.selectionStart ?? input.value.length;
    const before = input.value.slice(0, pos);
    const m = /[^\s()]*$/.exec(before);
    return { start: pos - m[0].length, end: pos, text: m[0] };
  }
  async function suggest() {
    const v = input.value;
    if (!v.trim()) {
      showAc(history().map((h) => ({ label: h, insert: h, whole: true, note: "recent" })));
      return;
    }
    const tok = tokenAt();
    const text = tok.text.replace(/^-/, "");
    if (!text || text.startsWith('"')) { hideAc(); return; }
    let fl = fields;
    if (!fl) { try { fl = await loadFields(rangeParams().p); } catch (_) { hideAc(); return; } }
    const colon = text.indexOf(":");
    const names = (f) => [f.field, ...(f.aliases || [])];
    if (colon < 0) {
      const low = text.toLowerCase();
      showAc(fl.filter((f) => names(f).some((n) => n.toLowerCase().startsWith(low)))
        .map((f) => ({ label: f.field + ":", insert: f.field + ":", note: `${f.lines.toLocaleString()} lines` })));
    } else {
      const key = text.slice(0, colon), typed = text.slice(colon + 1).replace(/^"/, "").toLowerCase();
      const f = fl.find((x) => names(x).includes(key));
      showAc(f ? f.top.filter((t) => t.value.toLowerCase().startsWith(typed))
        .map((t) => ({ label: `${key}:${quote(t.value)}`, insert: `${key}:${quote(t.value)} `, note: `${t.lines.toLocaleString()} lines` })) : []);
    }
  }
  function accept(i) {
    const it = acItems[i];
    if (!it) return;
    if (it.whole) { input.value = it.insert; hideAc(); run(true); return; }
    const tok = tokenAt();
    // A leading "-" stays: it negates the completed term.
    const lead = tok.text.startsWith("-") ? 1 : 0;
    input.value = input.value.slice(0, tok.start + lead) + it.insert + input.value.slice(tok.end);
    const at = tok.start + it.insert.length;
    input.setSelectionRange(at, at);
    hideAc();
    if (it.insert.endsWith(":")) suggest();
  }
  function mark() { [...ac.children].forEach((li, i) => li.classList.toggle("sel", i === acSel)); }
  input.addEventListener("input", () => suggest());
  input.addEventListener("focus", () => { if (!input.value.trim()) suggest(); });
  input.addEventListener("blur", () => setTimeout(hideAc, 150));
  input.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown" && !ac.hidden) { e.preventDefault(); acSel = Math.min(acItems.length - 1, acSel + 1); mark(); }
    else if (e.key === "ArrowUp" && !ac.hidden) { e.preventDefault(); acSel = Math.max(-1, acSel - 1); mark(); }
    else if (e.key === "Tab" && !ac.hidden && acItems.length) { e.preventDefault(); accept(acSel < 0 ? 0 : acSel); }
    else if (e.key === "Enter") { e.preventDefault(); if (!ac.hidden && acSel >= 0) accept(acSel); else run(true); }
  });
  document.addEventListener("ferry:escape", () => { hideAc(); help.hidden = true; if (live) setLive(false); });
  window.addEventListener("popstate", () => { input.value = state.get("q"); replacePicker(); run(); });

  input.value = state.get("q");
  run();
})();
