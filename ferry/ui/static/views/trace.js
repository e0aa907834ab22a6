// One trace: a waterfall of its spans in tree order with the critical path marked, the trace's log
// lines under their spans, and a span panel (attributes, resource, events, exceptions, pivots).
"use strict";
(function () {
  const { el } = ferry;
  const view = ferry.view();
  const traceId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  const NS = 1000000000n;

  // The chain of spans that sets the trace's end-to-end time: from a span, its child that ends last
  // (before the point reached so far) is on the path, then the child ending last before that one
  // starts, and so on, recursively; children overlapped by a later critical child are not. Returns
  // span id -> the [start, end) offsets where that span itself is the critical work.
  function criticalPath(root, kids) {
    const out = new Map();
    const end = (s) => s.offset_ns + s.duration_ns;
    function walk(span, limit) {
      const segs = [];
      let cursor = Math.min(end(span), limit);
      const children = (kids.get(span.span_id) || []).slice().sort((a, b) => end(b) - end(a));
      for (const k of children) {
        if (k.offset_ns >= cursor) continue;
        const kEnd = Math.min(end(k), cursor);
        if (kEnd <= span.offset_ns) break;
        if (kEnd < cursor) segs.push([kEnd, cursor]);
        walk(k, kEnd);
        cursor = Math.max(k.offset_ns, span.offset_ns);
        if (cursor <= span.offset_ns) break;
      }
      if (cursor > span.offset_ns) segs.push([span.offset_ns, cursor]);
      out.set(span.span_id, segs);
    }
    walk(root, Infinity);
    return out;
  }

  // Spans in tree order (children by start time); a span whose parent is missing is a root.
  function treeOrder(spans) {
    const byId = new Map(spans.map((s) => [s.span_id, s]));
    const kids = new Map();
    const roots = [];
    for (const s of spans) {
      if (s.parent_span_id && byId.has(s.parent_span_id) && s.parent_span_id !== s.span_id) {
        if (!kids.has(s.parent_span_id)) kids.set(s.parent_span_id, []);
        kids.get(s.parent_span_id).push(s);
      } else roots.push(s);
    }
    const byStart = (a, b) => a.offset_ns - b.offset_ns;
    roots.sort(byStart);
    for (const list of kids.values()) list.sort(byStart);
    const order = [];
    const seen = new Set();
    const stack = roots.slice().reverse().map((s) => [s, 0]);
    while (stack.length) {  // iterative: a 1,000-deep trace must not overflow the call stack
      const [s, depth] = stack.pop();
      if (seen.has(s.span_id)) continue;
      seen.add(s.span_id);
      order.push([s, depth]);
      const ch = kids.get(s.span_id) || [];
      for (let i = ch.length - 1; i >= 0; i--) stack.push([ch[i], depth + 1]);
    }
    return { order, kids, roots };
  }

  const absNs = (t, offset) => BigInt(t.start_ns) + BigInt(Math.round(offset));
  function logsHref(t, span) {
    const a = absNs(t, span.offset_ns), b = absNs(t, span.offset_ns + span.duration_ns);
    const q = `trace_id:${t.trace_id} span_id:${span.span_id}`;
    return `/?q=${encodeURIComponent(q)}&from=${a - 300n * NS}&to=${b + 300n * NS}`;
  }
  function metricsHref(t, span) {
    const a = absNs(t, span.offset_ns), b = absNs(t, span.offset_ns + span.duration_ns);
    const q = `sum(rate(traces_span_metrics_calls_total{service_name=${JSON.stringify(span.service)}}[1m]))`;
    return `/ui/metrics?q=${encodeURIComponent(q)}&from=${a - 900n * NS}&to=${b + 900n * NS}`;
  }
  function serviceTracesHref(t, span) {
    const a = absNs(t, span.offset_ns);
    return `/ui/traces?service=${encodeURIComponent(span.service)}&from=${a - 900n * NS}&to=${a + 900n * NS}`;
  }

  // Every signal of the span's service or host around the span's time: the target view.
  function targetHref(t, span, kind, name) {
    const a = absNs(t, span.offset_ns);
    return "/ui/target?" + new URLSearchParams({ kind, name, from: String(a - 900n * NS), to: String(a + 900n * NS) });
  }

  const kv = (obj) => {
    const keys = Object.keys(obj || {}).sort();
    if (!keys.length) return el("p", { class: "muted" }, "none");
    return el("div", { class: "kv" }, keys.flatMap((k) => [el("span", { class: "k" }, k), el("span", { class: "v" }, String(obj[k]))]));
  };
  const offset = (ns) => "+" + ferry.fmtDuration(Math.max(0, Math.round(ns)));

  function spanPanel(t, span, logs, onClose) {
    document.querySelectorAll(".side-panel").forEach((p) => p.remove());
    const exceptions = span.events.filter((e) => e.name === "exception");
    const others = span.events.filter((e) => e.name !== "exception");
    const host = (t.resources[span.resource] || {})["host.name"];
    const panel = el("aside", { class: "side-panel span-panel", "data-span-id": span.span_id, "aria-label": "span details" },
      el("button", { class: "close", "aria-label": "close", onclick: () => { panel.remove(); onClose(); } }, "×"),
      el("h2", {}, span.name),
      el("p", {}, el("span", { class: "chip", style: { borderColor: ferry.colour(span.service) } },
        el("span", { class: "svc-dot", style: { background: ferry.colour(span.service) } }), span.service),
        " ", span.status === "error" ? el("span", { class: "chip lvl-error" }, "error") : null),
      el("div", { class: "pivots" },
        el("a", { href: logsHref(t, span), "data-pivot": "logs" }, "Logs of this span"),
        el("a", { href: metricsHref(t, span), "data-pivot": "metrics" }, `Metrics of ${span.service}`),
        el("a", { href: serviceTracesHref(t, span), "data-pivot": "traces" }, `Traces of ${span.service}`),
        el("a", { href: targetHref(t, span, "service", span.service), "data-pivot": "target-service" }, `All signals of ${span.service}`),
        host ? el("a", { href: targetHref(t, span, "host", host), "data-pivot": "target-host" }, `All signals of host ${host}`) : null),
      el("div", { class: "kv" },
        ...[["duration", ferry.fmtDuration(span.duration_ns)], ["start", `${offset(span.offset_ns)} · ${ferry.fmtTime(Number(absNs(t, span.offset_ns) / 1000000n) * 1e6)}`],
          ["kind", span.kind], ["status", span.status + (span.status_message ? `: ${span.status_message}` : "")],
          ["span id", span.span_id], ["parent", span.parent_span_id || "(root)"], ["scope", span.scope || ""]]
          .flatMap(([k, v]) => [el("span", { class: "k" }, k), el("span", { class: "v" }, v)])),
      exceptions.length ? el("section", { class: "exceptions" }, el("h3", {}, "Exceptions"),
        exceptions.map((e) => el("div", { class: "exception" },
          el("div", { class: "lvl-error exc-head" }, el("b", {}, e.attributes["exception.type"] || "exception"), ": ",
            e.attributes["exception.message"] || ""),
          el("div", { class: "muted" }, offset(e.offset_ns)),
          e.attributes["exception.stacktrace"] ? el("pre", { class: "stack" }, e.attributes["exception.stacktrace"]) : null))) : null,
      el("h3", {}, "Attributes"), kv(span.attributes),
      others.length ? el("section", {}, el("h3", {}, "Events"), others.map((e) => el("div", { class: "event" },
        el("div", {}, el("b", {}, e.name), " ", el("span", { class: "muted" }, offset(e.offset_ns))), kv(e.attributes)))) : null,
      logs.length ? el("section", {}, el("h3", {}, `Log lines (${logs.length})`), logs.map((l) => el("div", { class: "mono log-line" },
        el("span", { class: "lvl " + ferry.levelClass(l.level) }, l.level || ""), " ", l.body))) : null,
      span.links.length ? el("section", {}, el("h3", {}, "Links"), span.links.map((l) =>
        el("div", {}, el("a", { class: "mono", href: `/ui/traces/${l.trace_id}` }, `${l.trace_id} / ${l.span_id}`)))) : null,
      el("h3", {}, "Resource"), kv(t.resources[span.resource]));
    document.body.append(panel);
  }

  function render(t) {
    const spans = t.spans;
    const total = Math.max(t.duration_ns, 1);
    const { order, kids, roots } = treeOrder(spans);
    const root = roots[0];
    const crit = root ? criticalPath(root, kids) : new Map();
    const logsBySpan = new Map();
    const loose = [];
    const ids = new Set(spans.map((s) => s.span_id));
    for (const l of t.logs) {
      if (l.span_id && ids.has(l.span_id)) {
        if (!logsBySpan.has(l.span_id)) logsBySpan.set(l.span_id, []);
        logsBySpan.get(l.span_id).push(l);
      } else loose.push(l);
    }
    const services = [...new Set(spans.map((s) => s.service))].sort();
    const errors = spans.filter((s) => s.status === "error").length;
    const pct = (ns) => (100 * ns / total).toFixed(4) + "%";

    const head = el("div", { class: "panel trace-head" },
      el("h1", {}, root ? root.name : "(root span missing)",
        el("span", { class: "muted" }, " · ", root ? root.service : "")),
      el("div", { class: "trace-facts" },
        el("span", { class: "mono" }, t.trace_id),
        el("span", {}, ferry.fmtTime(t.start_ms * 1e6)),
        el("span", { "data-trace-duration": "" }, ferry.fmtDuration(t.duration_ns)),
        el("span", { "data-span-count": "" }, `${spans.length} span${spans.length === 1 ? "" : "s"}`),
        errors ? el("span", { class: "lvl-error" }, `${errors} error${errors === 1 ? "" : "s"}`) : null,
        el("span", {}, `${t.logs.length} log line${t.logs.length === 1 ? "" : "s"}`),
        el("a", { href: `/?q=${encodeURIComponent("trace_id:" + t.trace_id)}&from=${BigInt(t.start_ns) - 300n * NS}&to=${absNs(t, t.duration_ns) + 300n * NS}`, "data-pivot": "trace-logs" }, "Logs of this trace")),
      el("div", { class: "services" }, services.map((s) => el("span", { class: "chip" },
        el("span", { class: "svc-dot", style: { background: ferry.colour(s) } }), s)),
        el("span", { class: "muted legend" }, el("span", { class: "crit-sample" }), " critical path")),
      t.spans_truncated ? el("div", { class: "error" }, "This trace has more spans than one page shows; the first ones by time are drawn.") : null,
      t.logs_truncated ? el("div", { class: "error" }, "This trace has more log lines than one page shows; the first ones by time are drawn.") : null);

    const ticks = el("div", { class: "wf-row wf-ticks" }, el("div", { class: "wf-label" }, "Span"),
      el("div", { class: "wf-track" }, [0, 0.25, 0.5, 0.75, 1].map((f) =>
        el("span", { class: "tick", style: { left: (f * 100) + "%" } }, ferry.fmtDuration(Math.round(f * t.duration_ns))))));

    const rows = [];  // [element, span or null, depth]
    const frag = document.createDocumentFragment();
    const rowOf = new Map();
    for (const [s, depth] of order) {
      const segs = crit.get(s.span_id);
      const hasKids = kids.has(s.span_id);
      const bar = el("div", { class: "bar", style: { left: pct(s.offset_ns), width: `max(2px, ${pct(s.duration_ns)})`, background: ferry.colour(s.service) } });
      const track = el("div", { class: "wf-track" }, bar,
        segs ? segs.map(([a, b]) => el("div", { class: "crit-seg", style: { left: pct(a), width: `max(1px, ${pct(b - a)})` } })) : null,
        el("span", { class: "dur", style: { left: `calc(${pct(s.offset_ns + s.duration_ns)} + 4px)` } }, ferry.fmtDuration(s.duration_ns)));
      const row = el("div", {
        class: "wf-row span-row" + (s.status === "error" ? " span-error" : "") + (segs ? " critical" : ""),
        "data-span-id": s.span_id, "data-depth": depth, "data-name": s.name, tabindex: "0",
        ...(segs ? { "data-critical": "" } : {}), ...(s.status === "error" ? { "data-error": "" } : {}),
      },
        el("div", { class: "wf-label", style: { paddingLeft: (4 + depth * 14) + "px" } },
          hasKids ? el("button", { class: "toggle", "aria-label": "collapse", "aria-expanded": "true" }, "▾") : el("span", { class: "toggle-space" }),
          s.status === "error" ? el("span", { class: "err-mark", title: s.status_message || "error" }, "!") : null,
          el("span", { class: "svc", style: { color: ferry.colour(s.service) } }, s.service),
          el("span", { class: "name" }, s.name)),
        track);
      rows.push([row, s, depth]);
      rowOf.set(s.span_id, row);
      frag.append(row);
      for (const l of logsBySpan.get(s.span_id) || []) {
        const lr = el("div", { class: "wf-row log-row", "data-log-span": s.span_id },
          el("div", { class: "wf-label log-label", style: { paddingLeft: (22 + (depth + 1) * 14) + "px" } },
            el("span", { class: "lvl " + ferry.levelClass(l.level) }, l.level || "log"),
            el("span", { class: "muted" }, offset(l.offset_ns))),
          el("div", { class: "log-body mono" }, el("span", { class: "tick-mark", style: { left: pct(l.offset_ns) } }), l.body));
        rows.push([lr, null, depth + 1]);
        frag.append(lr);
      }
    }
    const waterfall = el("div", { class: "panel waterfall", "data-waterfall": "" }, ticks);
    waterfall.append(frag);
    if (loose.length) {
      waterfall.append(el("div", { class: "wf-row wf-section muted" }, "Log lines of this trace outside any span it holds"));
      for (const l of loose) waterfall.append(el("div", { class: "wf-row log-row", "data-log-span": "" },
        el("div", { class: "wf-label log-label" }, el("span", { class: "lvl " + ferry.levelClass(l.level) }, l.level || "log"),
          el("span", { class: "muted" }, offset(l.offset_ns))),
        el("div", { class: "log-body mono" }, `${l.service}: ${l.body}`)));
    }

    // Collapsing a span hides its subtree (its logs too); rows come in tree order, so a subtree is
    // the run of rows deeper than it.
    const collapsed = new Set();
    function relayout() {
      let hideBelow = Infinity;
      for (const [row, s, depth] of rows) {
        if (depth > hideBelow) { row.hidden = true; continue; }
        hideBelow = Infinity;
        row.hidden = false;
        if (s && collapsed.has(s.span_id)) hideBelow = depth;
      }
    }
    let selected = null;
    const unselect = () => {
      if (selected) selected.classList.remove("selected");
      selected = null;
      ferry.state.set({ span: "" });
    };
    document.addEventListener("ferry:escape", unselect);
    const bySpan = new Map(spans.map((s) => [s.span_id, s]));
    waterfall.addEventListener("click", (e) => {
      const row = e.target.closest(".span-row");
      if (!row) return;
      const s = bySpan.get(row.dataset.spanId);
      if (e.target.closest(".toggle")) {
        const btn = e.target.closest(".toggle");
        if (collapsed.has(s.span_id)) collapsed.delete(s.span_id); else collapsed.add(s.span_id);
        const open = !collapsed.has(s.span_id);
        btn.textContent = open ? "▾" : "▸";
        btn.setAttribute("aria-expanded", String(open));
        relayout();
        return;
      }
      unselect();
      selected = row;
      row.classList.add("selected");
      ferry.state.set({ span: s.span_id });
      spanPanel(t, s, logsBySpan.get(s.span_id) || [], unselect);
    });
    waterfall.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && e.target.classList.contains("span-row")) e.target.click();
    });
    view.replaceChildren(head, waterfall);
    const wanted = new URLSearchParams(location.search).get("span");
    if (wanted && rowOf.has(wanted)) { rowOf.get(wanted).click(); rowOf.get(wanted).scrollIntoView({ block: "center" }); }
  }

  async function load() {
    view.replaceChildren(el("p", { class: "loading" }, "Loading the trace…"));
    document.title = `Trace ${traceId.slice(0, 16)} · ferry`;
    try {
      const t = await ferry.api(`/api/v1/ui/traces/${encodeURIComponent(traceId)}`);
      if (!t.found) {
        view.replaceChildren(el("div", { class: "panel empty", "data-not-found": "" },
          el("p", {}, `Trace ${t.trace_id} was not found.`),
          el("p", { class: "muted" }, "No span or log line with this trace id is stored: it may be older than the " +
            "retention, not have arrived yet, or belong to another tenant."),
          el("p", {}, el("a", { href: "/ui/traces" }, "Search traces"))));
        return;
      }
      render(t);
      // For benchmarks: when the waterfall is on screen (the frame after it was built).
      requestAnimationFrame(() => performance.mark("ferry:trace-rendered"));
    } catch (e) {
      ferry.showError(view, e);
    }
  }
  load();
})();
