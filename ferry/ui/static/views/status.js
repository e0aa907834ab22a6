// The status page: ferry as it runs, in the words of `ferry status` and `ferry pipeline` — receivers taking
// or refusing data and why, disk against its floor, spool, topics and stage instances, store tables and retention.
"use strict";
(function () {
  const { el, api } = ferry;
  const root = ferry.view();
  const REFRESH_MS = 5000;

  function size(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return i ? `${v.toFixed(1)} ${units[i]}` : `${v} B`;
  }
  const num = (v) => (v === null || v === undefined ? "–" : typeof v === "number" && !Number.isInteger(v) ? v.toFixed(1) : Number(v).toLocaleString());
  function uptime(s) {
    s = Math.floor(s || 0);
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return d ? `${d}d ${h}h ${m}m` : h ? `${h}h ${m}m` : `${m}m ${s % 60}s`;
  }
  const table = (attrs, head, rows) => el("table", { class: "grid", ...attrs },
    el("thead", {}, el("tr", {}, head.map(([h, cls]) => el("th", { class: cls }, h)))), el("tbody", {}, rows));

  const updated = el("span", { class: "muted", "data-updated": "" });
  const problem = el("div");
  const body = el("div", {}, el("p", { class: "loading" }, "Reading ferry's status…"));
  root.replaceChildren(el("div", { class: "toolbar" }, el("h1", { class: "status-title" }, "Status"), updated,
    el("span", { class: "muted" }, `refreshes every ${REFRESH_MS / 1000} s`)), problem, body);

  function summary(st, refused) {
    const refusing = st.refusing || [];
    const disk = st.disk || {};
    const floor = disk.min_free_bytes || 0;
    const under = floor && disk.free_bytes !== null && disk.free_bytes < floor;
    const behind = Object.entries(st.lag_batches || {}).filter(([, v]) => v);
    const lines = [
      ["receivers", refusing.length ? `REFUSING data: ${refusing.join(", ")}` : "taking data", refusing.length ? "bad" : "ok", "receivers"],
      ["disk", disk.free_bytes === null || disk.free_bytes === undefined ? "not measured yet"
        : `${size(disk.free_bytes)} free on the data disk; receivers refuse under ${size(floor)} (backpressure.min_free_disk_bytes)` +
          (under ? " — UNDER THE FLOOR" : ""), under ? "bad" : "ok", "disk"],
      ["stored", Object.entries(st.stored || {}).map(([k, v]) => `${k.replace(/_/g, " ")} ${num(v)}`).join("   "), "", "stored"],
      ["lag", behind.length ? behind.map(([k, v]) => `${k} ${num(v)} batches`).join(", ") : "none (every consumer group is caught up)",
        behind.length ? "warn" : "ok", "lag"],
      ["spool", `${num(st.spool_pending_batches || 0)} batches waiting for the store`, st.spool_pending_batches ? "warn" : "ok", "spool"],
      ["bus", `${st.bus_restarts || 0} nats-server restarts`, st.bus_restarts ? "warn" : "ok", "bus"],
    ];
    const counts = refused.counts || [];
    return el("section", { class: "panel" },
      el("h2", {}, `ferry up ${uptime(st.uptime_s)} (pid ${st.pid})`),
      el("div", { class: "status-lines" }, lines.map(([k, text, cls, key]) =>
        el("div", { class: "status-line " + cls, [`data-status-${key}`]: "" }, el("span", { class: "k" }, k), el("span", {}, text)))),
      el("h3", {}, "Refused and dropped since start"),
      counts.length ? table({ "data-refusals": "" }, [["what"], ["component"], ["signal"], ["reason"], ["count", "num"]],
        counts.map((c) => el("tr", {}, el("td", {}, c.counter.replace(/^ferry_|_total$/g, "").replace(/_/g, " ")),
          el("td", {}, c.component), el("td", {}, c.signal), el("td", {}, c.reason), el("td", { class: "num" }, num(c.count)))))
        : el("p", { class: "muted", "data-refusals": "" }, "Nothing refused or dropped since ferry started."));
  }

  function pipeline(p) {
    const topics = table({ "data-topics": "" },
      [["topic"], ["signal"], ["batches", "num"], ["bytes", "num"], ["in/s", "num"], ["written by"], ["read by"]],
      p.topics.map((t) => el("tr", { "data-topic": t.name }, el("td", { class: "mono" }, t.name), el("td", {}, t.signal),
        el("td", { class: "num" }, num(t.batches)), el("td", { class: "num" }, t.bytes === null ? "–" : size(t.bytes)),
        el("td", { class: "num" }, num(t.rate_in)), el("td", {}, t.writers.join(", ") || "(nothing here)"),
        el("td", {}, t.readers.join(", ") || "–"))));
    const stages = table({ "data-stages": "" },
      [["stage instance"], ["kind"], ["workers", "num"], ["lag (batches)", "num"], ["out/s", "num"], ["inputs → outputs"]],
      p.stages.map((s) => {
        const lags = Object.values(s.lag || {}).filter((v) => v !== null);
        const lag = lags.length ? lags.reduce((a, b) => a + b, 0) : null;
        return el("tr", { "data-stage": s.name, class: lag ? "behind" : "" }, el("td", { class: "mono" }, s.name), el("td", {}, s.kind),
          el("td", { class: "num" }, num(s.workers)), el("td", { class: "num" }, num(lag)), el("td", { class: "num" }, num(s.rate_out)),
          el("td", {}, `${s.inputs.join(", ")} → ${s.outputs.join(", ") || `store (${s.table || "the table each batch names"})`}`));
      }));
    return el("section", { class: "panel" }, el("h2", {}, "Pipeline"),
      p.probed ? null : el("p", { class: "muted" }, "The bus has not been probed yet: depth, lag and rates appear within a second or two."),
      el("h3", {}, "Topics"), topics, el("h3", {}, "Stage instances"), stages,
      el("p", { class: "muted" }, `Rates in ${p.rate_unit}.`));
  }

  function store(s) {
    const kept = (d) => (d === null || d === undefined ? "kept forever" : d < 0 ? "a TTL ferry did not write" : `kept ${d} day${d === 1 ? "" : "s"}`);
    return el("section", { class: "panel" }, el("h2", {}, "Store"),
      table({ "data-store": "" }, [["table"], ["rows", "num"], ["on disk", "num"], ["parts", "num"], ["oldest partition"], ["newest partition"], ["retention"]],
        s.tables.map((t) => el("tr", { "data-table": t.table }, el("td", { class: "mono" }, t.table),
          el("td", { class: "num", "data-rows": "" }, num(t.rows)), el("td", { class: "num" }, size(t.bytes_on_disk)),
          el("td", { class: "num" }, num(t.parts)), el("td", {}, t.oldest_partition || "–"), el("td", {}, t.newest_partition || "–"),
          el("td", { title: t.ttl || "no TTL" }, kept(t.retention_days))))),
      el("p", { class: "muted" }, "Retention as each table's TTL states it (retention.*_days in the config), counted from the later " +
        "of when a row happened and when it reached ferry; whole partitions are dropped once every row in them is past it."));
  }

  async function refresh() {
    // Each part is shown as soon as it is read; one failing says so without blanking the others.
    const parts = await Promise.allSettled([api("/api/v1/status"), api("/api/v1/ui/status/refused"),
      api("/api/v1/pipeline"), api("/api/v1/ui/status/store")]);
    const [st, refused, pipe, tables] = parts;
    const out = [];
    if (st.status === "fulfilled") out.push(summary(st.value, refused.status === "fulfilled" ? refused.value : {}));
    if (pipe.status === "fulfilled") out.push(pipeline(pipe.value));
    if (tables.status === "fulfilled") out.push(store(tables.value));
    const failed = parts.filter((p) => p.status === "rejected");
    if (failed.length) ferry.showError(problem, failed[0].reason); else problem.replaceChildren();
    if (out.length) body.replaceChildren(...out);
    updated.textContent = "updated " + ferry.fmtTime(Date.now() * 1e6, false).slice(11);
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
