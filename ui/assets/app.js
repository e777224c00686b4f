// FluxGate live view: a small, dependency-free page over the agent's admin
// JSON. The admin token lives in sessionStorage and travels only in the
// Authorization header of fetch calls; never in a URL.
"use strict";
(function () {
  const TOKEN = "fluxgate.admin.token";
  const POLL_MS = 1000;
  const TREND_MS = 2000;
  const WINDOW_MS = 15 * 60 * 1000;
  const main = document.getElementById("main");
  let timers = [];

  function el(tag, attrs, ...kids) {
    const e = tag.startsWith("svg:") ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function fmt(v) {
    if (v === null || v === undefined) return "invalid";
    const a = Math.abs(v);
    return a !== 0 && (a >= 1e6 || a < 1e-3) ? v.toExponential(3) : String(Math.round(v * 1000) / 1000);
  }
  function show(...nodes) { main.replaceChildren(...nodes); }

  class AuthError extends Error {}
  async function api(path) {
    const token = sessionStorage.getItem(TOKEN);
    if (!token) throw new AuthError("no token");
    const r = await fetch(path, { headers: { Authorization: "Bearer " + token, Accept: "application/json" }, cache: "no-store" });
    if (r.status === 401) { sessionStorage.removeItem(TOKEN); throw new AuthError("the agent refused the token"); }
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) { const err = new Error((body && (body.message || body.error)) || r.statusText); err.status = r.status; throw err; }
    return body;
  }

  function login(why) {
    stop();
    const input = el("input", { id: "token", type: "password", autocomplete: "off", required: "" });
    const form = el("form", { class: "login", "aria-labelledby": "login-h" },
      el("h1", { id: "login-h", text: "Admin token" }),
      el("p", { text: "The live view reads the agent's admin API. Enter admin.token; it stays in this tab (sessionStorage) and is sent only as an Authorization header." }),
      why ? el("p", { class: "bad", role: "alert", text: why }) : null,
      el("label", { for: "token", text: "Token" }), input, el("button", { type: "submit", text: "Open" }));
    form.addEventListener("submit", (ev) => { ev.preventDefault(); sessionStorage.setItem(TOKEN, input.value.trim()); route(); });
    show(form);
    input.focus();
  }
  function failed(e) {
    if (e instanceof AuthError) return login(e.message === "no token" ? "" : e.message);
    show(el("p", { class: "bad", role: "alert", text: "Error: " + e.message }));
  }
  function stop() { timers.forEach(clearInterval); timers = []; }
  function every(fn) { stop(); fn(); timers.push(setInterval(fn, POLL_MS)); }
  function also(fn, ms) { timers.push(setInterval(fn, ms)); } // one more loop of the page, first run ms from now
  function policyHref(key) { return "/ui/policies/" + key.split("/").map(encodeURIComponent).join("/"); }

  // Policies: every loaded policy and every refused file with its errors.
  async function policiesPage() {
    document.title = "Policies · FluxGate";
    const list = await api("/v1/policies");
    const rows = list.policies.map((p) => el("tr", {},
      el("td", {}, el("a", { href: policyHref(p.namespace + "/" + p.name), class: "policy-link", text: p.namespace + "/" + p.name })),
      el("td", { text: p.kind }), el("td", { class: "good", text: "loaded" }),
      el("td", { text: p.file }), el("td", { text: new Date(p.loaded_at).toLocaleString() })));
    const errs = list.errors || [];
    show(el("h1", { text: "Policies" }),
      el("p", { class: "muted", text: `store version ${list.version}: ${list.policies.length} loaded, ${errs.length} refused` }),
      rows.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["Policy", "Kind", "State", "File", "Loaded at"].map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, ...rows))
        : el("p", { text: "No policies are loaded." }),
      el("h2", { text: "Refused files" }),
      errs.length ? el("ul", { class: "errors" }, ...errs.map((e) => el("li", { text: e }))) : el("p", { class: "muted", text: "None: every file in the policies directory loaded." }));
  }

  // One policy: its circuit as a graph, then a plot per signal.
  const NW = 170, NH = 46, CW = 330, RH = 96, PAD = 24;
  function drawGraph(g, onSelect) {
    const byId = new Map(g.nodes.map((n) => [n.id, n]));
    const rows = Math.max(1, ...g.nodes.map((n) => n.row + 1));
    const W = PAD * 2 + Math.max(1, g.layers) * CW - (CW - NW), H = PAD * 2 + rows * RH;
    const pos = (n) => ({ x: PAD + n.layer * CW, y: PAD + n.row * RH });
    const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Circuit of " + g.policy, id: "circuit" });
    svg.append(el("svg:defs", {}, el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
      el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#56606b" }))));
    const labels = [];
    for (const e of g.edges) {
      const a = pos(byId.get(e.from)), b = pos(byId.get(e.to));
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
      const dx = Math.max(60, Math.abs(x2 - x1) / 2);
      const d = x2 > x1 ? `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`
        : `M${x1},${y1} C${x1 + 80},${y1 + RH} ${x2 - 80},${y2 + RH} ${x2},${y2}`; // feedback loop
      const grp = el("svg:g", { class: "edge", "data-signal": e.signal || "" }, el("svg:path", { d, "marker-end": "url(#arrow)" }));
      const mx = x2 > x1 ? (x1 + x2) / 2 : (x1 + x2) / 2, my = x2 > x1 ? (y1 + y2) / 2 : Math.max(y1, y2) + RH * 0.75;
      const text = el("svg:text", { x: mx, y: my + 4, "text-anchor": "middle", class: "edge-label", "data-signal": e.signal || "", text: e.signal ? e.signal : e.port });
      grp.append(text);
      svg.append(grp);
      labels.push({ grp, text });
    }
    for (const n of g.nodes) {
      const p = pos(n);
      const cls = ["node", n.type, n.actuator ? "actuator" : ""].join(" ").trim();
      const title = n.type === "component" ? `${n.kind}${n.line ? " (line " + n.line + ")" : ""}\n${n.params || ""}` : n.label;
      const grp = el("svg:g", { class: cls, "data-id": n.id, "data-kind": n.kind || n.type, tabindex: n.type === "component" ? 0 : null, role: n.type === "component" ? "button" : null,
        "aria-label": n.type === "component" ? `${n.kind}${n.actuator ? ", actuator" : ""}: show parameters` : null },
        el("svg:title", { text: title }),
        el("svg:rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 6 }),
        el("svg:text", { x: p.x + NW / 2, y: p.y + (n.actuator ? 19 : 27), "text-anchor": "middle", class: "kind", text: n.type === "constant" ? "constant " + n.label : n.type === "sink" ? "→ " + n.label : n.label }),
        n.actuator ? el("svg:text", { x: p.x + NW / 2, y: p.y + 36, "text-anchor": "middle", text: "actuator" }) : null);
      if (n.type === "component") {
        grp.addEventListener("click", () => onSelect(n, grp));
        grp.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); onSelect(n, grp); } });
      }
      svg.append(grp);
    }
    return { svg, labels };
  }
  function placeLabelBackgrounds(labels) {
    for (const { grp, text } of labels) {
      let bg = grp.querySelector("rect.bg");
      if (!bg) { bg = el("svg:rect", { class: "bg", rx: 3 }); grp.insertBefore(bg, text); }
      const b = text.getBBox();
      bg.setAttribute("x", b.x - 4); bg.setAttribute("y", b.y - 2); bg.setAttribute("width", b.width + 8); bg.setAttribute("height", b.height + 4);
    }
  }

  function shadeInvalid(u) { // the stretches where the signal was invalid
    const ts = u.data[0], vs = u.data[1], ctx = u.ctx, { top, height } = u.bbox;
    ctx.save();
    ctx.fillStyle = "rgba(179, 38, 30, 0.18)";
    for (let i = 0; i < vs.length; i++) {
      if (vs[i] !== null) continue;
      let j = i;
      while (j + 1 < vs.length && vs[j + 1] === null) j++;
      const x0 = u.valToPos(ts[i], "x", true), x1 = u.valToPos(j + 1 < ts.length ? ts[j + 1] : ts[j] + 1, "x", true);
      ctx.fillRect(x0, top, Math.max(2, x1 - x0), height);
      i = j;
    }
    ctx.restore();
  }
  function makePlot(name, box) {
    const opts = { width: Math.max(380, box.clientWidth - 16), height: 170, legend: { show: false },
      scales: { x: { time: true } }, axes: [{ stroke: "#1b1f24" }, { stroke: "#1b1f24" }],
      series: [{}, { label: name, stroke: "#0b5cad", width: 2, spanGaps: false }], hooks: { drawClear: [shadeInvalid] } };
    return new uPlot(opts, [[], []], box.querySelector(".chart"));
  }

  async function policyPage(ns, name) {
    const key = ns + "/" + name;
    document.title = key + " · FluxGate";
    const g = await api(`/v1/ui/graph/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`);
    const details = el("pre", { id: "params", class: "muted", text: "Select a component (click, or Tab then Enter) to see its parameters." });
    let selected = null;
    const { svg, labels } = drawGraph(g, (n, grp) => {
      if (selected) selected.classList.remove("selected");
      selected = grp; grp.classList.add("selected");
      details.classList.remove("muted");
      details.textContent = `${n.kind}${n.actuator ? " (actuator)" : ""}${n.line ? ", line " + n.line : ""}\n\n${n.params || ""}`;
    });
    const status = el("p", { class: "muted", id: "status", text: "waiting for signals…" });
    const plots = el("div", { class: "plots" });
    show(el("p", {}, el("a", { href: "/ui/", text: "← Policies" })), el("h1", { text: "Policy " + key }),
      el("p", { class: "muted", text: `circuit every ${g.interval_ms} ms · ${g.nodes.length} nodes in ${g.layers} layers · ${g.crossings} edge crossings` }),
      el("div", { class: "graph" }, svg), el("h2", { text: "Parameters" }), details,
      el("h2", { text: "Signals, last 15 minutes" }),
      el("p", { class: "legend-note" }, el("span", { class: "swatch" }), " shaded: the signal was invalid"), status, plots);
    placeLabelBackgrounds(labels);
    const series = new Map(); // signal name → {t, v, box, plot}
    let since = 0;
    const tick = async () => {
      let h;
      try { h = await api(`/v1/ui/history/${encodeURIComponent(ns)}/${encodeURIComponent(name)}?since=${since}`); }
      catch (e) { if (e instanceof AuthError) return login(e.message); status.textContent = "no data: " + e.message; return; }
      status.textContent = `updated ${new Date(h.now_ms).toLocaleTimeString()} · one sample every ${h.every_ms} ms, ${h.points} kept per signal`;
      for (const s of h.signals) {
        let ent = series.get(s.name);
        if (!ent) {
          const box = el("section", { class: "plot", "data-signal": s.name, "aria-label": "signal " + s.name },
            el("h3", {}, s.name + " ", el("span", { class: "now" })), el("div", { class: "chart" }));
          plots.append(box);
          ent = { t: [], v: [], box, plot: makePlot(s.name, box) };
          series.set(s.name, ent);
        }
        for (let i = 0; i < s.t.length; i++) { ent.t.push(s.t[i] / 1000); ent.v.push(s.v[i]); since = Math.max(since, s.t[i]); }
        const cut = (h.now_ms - WINDOW_MS) / 1000;
        while (ent.t.length && ent.t[0] < cut) { ent.t.shift(); ent.v.shift(); }
        ent.plot.setData([ent.t, ent.v]);
        const cur = s.valid ? fmt(s.value) : "invalid" + (s.reason ? " (" + s.reason + ")" : "");
        ent.box.querySelector(".now").textContent = "= " + cur;
        ent.box.classList.toggle("invalid", !s.valid);
        ent.box.dataset.points = String(ent.t.length);
        ent.box.dataset.last = s.valid ? String(s.value) : "invalid";
        for (const { grp, text } of labels) {
          if (grp.dataset.signal !== s.name) continue;
          text.textContent = `${s.name} = ${cur}`;
          grp.classList.toggle("invalid", !s.valid);
          text.dataset.valid = String(s.valid);
        }
      }
      placeLabelBackgrounds(labels);
    };
    every(tick);
  }

  // History from the agent's PromQL source (GET /v1/ui/trends/VIEW): the
  // last 15 minutes on a grid of steps at first, then only the steps after
  // the last one held; the point at "now" (tail) is replaced by the next
  // answer. Every series keeps one value (or null) per time.
  function trend(view) {
    const st = { t: [], series: new Map(), since: 0, tail: false, busy: false, answer: null };
    st.poll = async () => {
      if (st.busy) return false; // the last answer is still coming
      st.busy = true;
      try { mergeTrend(st, await api(`/v1/ui/trends/${view}?since=${st.since}`)); return true; } finally { st.busy = false; }
    };
    st.get = (pred) => [...st.series.values()].filter((s) => pred(s.labels));
    return st;
  }
  function mergeTrend(st, r) {
    if (st.tail) { st.t.pop(); for (const s of st.series.values()) s.v.pop(); }
    const n0 = st.t.length;
    for (const ms of r.t) st.t.push(ms / 1000);
    for (const s of r.series) {
      const key = JSON.stringify(Object.entries(s.labels).sort());
      let ent = st.series.get(key);
      if (!ent) { ent = { labels: s.labels, v: new Array(n0).fill(null) }; st.series.set(key, ent); }
      ent.v.push(...s.v);
    }
    for (const ent of st.series.values()) while (ent.v.length < st.t.length) ent.v.push(null);
    st.tail = r.tail;
    const grid = r.tail ? r.t.length - 1 : r.t.length;
    if (grid > 0) st.since = r.t[grid - 1];
    const cut = (r.now_ms - r.window_ms) / 1000;
    let k = 0;
    while (k < st.t.length && st.t[k] <= cut) k++;
    if (k) { st.t.splice(0, k); for (const e of st.series.values()) e.v.splice(0, k); }
    for (const [key, e] of st.series) if (e.v.every((x) => x === null)) st.series.delete(key);
    st.answer = r;
  }
  function trendNote(r) {
    return `from ${r.source}: a point every ${r.step_ms / 1000} s, rates over ${r.rate_window_ms / 1000} s; updated ${new Date(r.now_ms).toLocaleTimeString()}`;
  }
  function trendFailed(e, note) {
    if (e instanceof AuthError) return login(e.message);
    note.className = "bad";
    note.setAttribute("role", "alert");
    note.textContent = (e.status === 503 && /no history/.test(e.message) ? "" : "No history: ") + e.message;
  }
  const COLORS = ["#0b5cad", "#b3261e", "#1e6b34", "#8a4b00", "#6a1b9a", "#00695c", "#ad1457", "#37474f"];
  // chart draws lines [{key, label, v, scale}] over times t in box's
  // .chart, rebuilding the plot when the lines change. The plot (box.uplot)
  // and data-points / data-first-ms (the first time with a value) say
  // what it shows.
  function chart(box, t, lines, axes, yRange) {
    const holder = box.querySelector(".chart");
    const data = [t.slice(), ...lines.map((l) => l.v.slice())];
    const sig = lines.map((l) => l.key).join("\u0000");
    if (!lines.length) {
      if (box.uplot) box.uplot.destroy();
      box.uplot = null; box.sig = "";
      holder.replaceChildren(el("p", { class: "muted", text: "Nothing in the last 15 minutes." }));
    } else if (box.sig !== sig || !box.uplot) {
      if (box.uplot) box.uplot.destroy();
      holder.replaceChildren();
      box.uplot = new uPlot({ width: Math.max(380, box.clientWidth - 16), height: 190, scales: yRange ? { x: { time: true }, y: { range: yRange } } : { x: { time: true } },
        axes: axes || [{ stroke: "#1b1f24" }, { stroke: "#1b1f24" }],
        series: [{}, ...lines.map((l, i) => ({ label: l.label, stroke: COLORS[i % COLORS.length], width: 2, scale: l.scale || "y", spanGaps: false }))] }, data, holder);
      box.sig = sig;
    } else box.uplot.setData(data);
    box.dataset.points = String(t.length);
    const first = t.findIndex((_, i) => lines.some((l) => l.v[i] !== null));
    box.dataset.firstMs = first < 0 ? "" : String(Math.round(t[first] * 1000));
  }
  function plotBox(attrs, title) {
    return el("section", Object.assign({ class: "plot" }, attrs), el("h3", { text: title }), el("div", { class: "chart" }));
  }

  // perName returns the poll of a history view drawn as a plot per value
  // of one label (a flux meter, a control point): o.label names it,
  // o.attr and o.title mark and title its box, o.draw(box, name) draws
  // it; plots of values gone from the window are removed.
  function perName(tr, note, container, o) {
    const boxes = new Map();
    return async () => {
      try { if (!await tr.poll()) return; } catch (e) { return trendFailed(e, note); }
      note.className = "muted"; note.removeAttribute("role");
      note.textContent = o.note + trendNote(tr.answer);
      const names = [...new Set(tr.get(() => true).map((s) => s.labels[o.label] || ""))].sort();
      for (const [name, box] of boxes) if (!names.includes(name)) { if (box.uplot) box.uplot.destroy(); box.remove(); boxes.delete(name); }
      if (!names.length) container.replaceChildren(el("p", { class: "muted", text: o.none }));
      else if (!boxes.size) container.replaceChildren();
      for (const name of names) {
        let box = boxes.get(name);
        if (!box) { box = plotBox({ [o.attr]: name }, o.title(name)); boxes.set(name, box); container.append(box); }
        o.draw(box, name);
      }
    };
  }

  // Control points (rates between polls, and history) and flux meters
  // (history).
  async function flowsPage() {
    document.title = "Control points · FluxGate";
    const cpBody = el("tbody"), fmBox = el("div", { class: "plots", id: "flux-meters" }), note = el("p", { class: "muted", text: "Rates appear after the second poll (one a second)." });
    const fmNote = el("p", { class: "muted", id: "flux-meters-note", text: "loading the last 15 minutes…" });
    const cpNote = el("p", { class: "muted", id: "control-points-note", text: "loading the last 15 minutes…" }), cpBox = el("div", { class: "plots", id: "control-points" });
    show(el("h1", { text: "Control points" }), note,
      el("table", {}, el("thead", {}, el("tr", {}, ...["Control point", "Checks", "Accepted /s", "Rejected /s by reason", "Policies"].map((h) => el("th", { scope: "col", text: h })))), cpBody),
      el("h2", { text: "Control points: decisions per second, last 15 minutes" }), cpNote, cpBox,
      el("h2", { text: "Flux meters: latency percentiles and flows per second, last 15 minutes" }), fmNote, fmBox);
    let prev = null;
    every(async () => {
      let f, cps;
      try { [f, cps] = await Promise.all([api("/v1/ui/flows"), api("/v1/controlpoints")]); }
      catch (e) { return failed(e); }
      const dt = prev ? (f.now_ms - prev.now_ms) / 1000 : 0;
      const before = new Map((prev ? prev.decisions : []).map((d) => [JSON.stringify([d.control_point, d.policy, d.component, d.decision_type, d.reason]), d.count]));
      const points = new Map();
      for (const cp of cps.control_points || []) points.set(cp.name, { checks: cp.checks, acc: 0, rej: new Map(), pols: new Set() });
      for (const d of f.decisions) {
        const p = points.get(d.control_point) || { checks: null, acc: 0, rej: new Map(), pols: new Set() };
        points.set(d.control_point, p);
        if (d.policy) p.pols.add(d.policy);
        const delta = dt > 0 ? (d.count - (before.get(JSON.stringify([d.control_point, d.policy, d.component, d.decision_type, d.reason])) || 0)) / dt : 0;
        if (/ACCEPT/i.test(d.decision_type)) p.acc += delta; else p.rej.set(d.reason || "rejected", (p.rej.get(d.reason || "rejected") || 0) + delta);
      }
      const rows = [...points.entries()].sort((a, b) => a[0].localeCompare(b[0])).map(([name, p]) => el("tr", {},
        el("td", { text: name || "(none)" }), el("td", { text: p.checks == null ? "–" : String(p.checks) }),
        el("td", { text: dt > 0 ? fmt(p.acc) : "–" }),
        el("td", { text: p.rej.size ? [...p.rej].map(([r, v]) => `${r}: ${dt > 0 ? fmt(v) : "–"}`).join(", ") : "none" }),
        el("td", {}, ...[...p.pols].sort().flatMap((k, i) => [i ? ", " : "", el("a", { href: policyHref(k.includes("/") ? k : "default/" + k), text: k })]))));
      cpBody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, text: "No control point has been checked yet." }))]));
      prev = f;
    });
    const fm = trend("flux_meters");
    const axes = [{ stroke: "#1b1f24" }, { scale: "ms", stroke: "#1b1f24", label: "latency" },
      { scale: "rate", side: 1, stroke: "#1b1f24", label: "flows/s", grid: { show: false } }];
    const fmTick = perName(fm, fmNote, fmBox, {
      note: "Percentiles in the meter's unit (milliseconds unless its attribute_key says otherwise), ",
      label: "flux_meter_name", attr: "data-meter", title: (name) => "flux meter " + name,
      none: "No flux meter measured a flow in the last 15 minutes.",
      draw: (box, name) => {
        const of = (stat) => (fm.get((l) => (l.flux_meter_name || "") === name && l.stat === stat)[0] || { v: fm.t.map(() => null) }).v;
        chart(box, fm.t, [{ key: "p50", label: "p50", v: of("p50"), scale: "ms" }, { key: "p90", label: "p90", v: of("p90"), scale: "ms" },
          { key: "p99", label: "p99", v: of("p99"), scale: "ms" }, { key: "rate", label: "flows/s", v: of("rate"), scale: "rate" }], axes);
      },
    });
    fmTick();
    also(fmTick, TREND_MS);
    const cp = trend("control_points");
    const decision = (l) => /accept/i.test(l.decision_type || "") ? "accepted" + (l.reason && l.reason !== "accepted" ? ` (${l.reason})` : "") : "rejected: " + (l.reason || "?");
    const cpTick = perName(cp, cpNote, cpBox, {
      note: "Decisions per second by type and reason (a flow several components decide counts once for each), ",
      label: "control_point", attr: "data-control-point", title: (name) => "control point " + (name || "(none)"),
      none: "No control point was checked in the last 15 minutes.",
      draw: (box, name) => chart(box, cp.t, cp.get((l) => (l.control_point || "") === name)
        .map((s) => ({ key: JSON.stringify(s.labels), label: decision(s.labels), v: s.v })).sort((a, b) => a.label.localeCompare(b.label))),
    });
    cpTick();
    also(cpTick, TREND_MS);
  }

  // Gateway: what GET /v1/gateway/upstreams reports, when the gateway runs
  // here, and its last 15 minutes.
  const GATEWAY_PLOTS = [
    ["requests", "requests per second, by upstream target"],
    ["errors", "share of 5xx answers (0–1), by upstream target", [0, 1]],
    ["p99", "p99 latency (seconds), by upstream target"],
    ["weight", "effective weight, by upstream target"],
    ["breaker", "circuit breaker state (0 closed, 1 open, 2 half-open), by upstream", [0, 2]],
    ["canary_weight", "canary weight (%), by route", [0, 100]],
  ];
  const GATEWAY_RANGE = new Map(GATEWAY_PLOTS.map(([stat, , range]) => [stat, range]));
  async function gatewayPage() {
    document.title = "Gateway · FluxGate";
    const statusBox = el("div", { id: "gw-status" });
    const histNote = el("p", { class: "muted", id: "gw-history-note", text: "loading the last 15 minutes…" });
    const plots = new Map(GATEWAY_PLOTS.map(([stat, title]) => [stat, plotBox({ "data-trend": stat }, title)]));
    const gw = trend("gateway");
    let hostGroup = new Map(), shown = false; // target address → upstream group
    const gwTick = async () => {
      if (!shown) return;
      try { if (!await gw.poll()) return; } catch (e) { return trendFailed(e, histNote); }
      histNote.className = "muted"; histNote.removeAttribute("role");
      histNote.textContent = "History " + trendNote(gw.answer);
      const target = (l) => { const h = l.upstream_host || ""; return h ? `${l.upstream || hostGroup.get(h) || "?"} ${h}` : "(no upstream: rejected or unrouted)"; };
      const name = { breaker: (l) => l.circuit_name || "?", canary_weight: (l) => l.route_id || "?" };
      for (const [stat, box] of plots) {
        const lines = gw.get((l) => l.stat === stat).map((s) => ({ key: JSON.stringify(s.labels), label: (name[stat] || target)(s.labels), v: s.v }))
          .sort((a, b) => a.label.localeCompare(b.label));
        chart(box, gw.t, lines, null, GATEWAY_RANGE.get(stat));
      }
    };
    every(async () => {
      let s;
      try { s = await api("/v1/gateway/upstreams"); }
      catch (e) {
        if (e instanceof AuthError) return login(e.message);
        stop();
        return show(el("h1", { text: "Gateway" }), el("p", { text: e.status === 404 ? "The gateway does not run in this process: it shows here when the agent runs as `fluxgate gateway`." : "Gateway: " + e.message }));
      }
      hostGroup = new Map((s.upstreams || []).flatMap((u) => u.targets.map((t) => [t.address, u.name])));
      const ups = (s.upstreams || []).map((u) => el("section", {}, el("h2", { text: `upstream ${u.name} (${u.algorithm})` }),
        el("p", {}, "circuit breaker: ", el("span", { class: u.breaker === "open" ? "bad" : "", text: u.breaker || "none" }),
          u.health_check_interval ? ` · active health checks every ${u.health_check_interval / 1e9} s` : " · no active health checks"),
        el("table", {}, el("thead", {}, el("tr", {}, ...["Target", "Health", "Weight", "Effective weight", "In flight"].map((h) => el("th", { scope: "col", text: h })))),
          el("tbody", {}, ...u.targets.map((t) => el("tr", {}, el("td", { text: t.address }),
            el("td", { class: t.healthy && !t.ejected ? "good" : "bad", text: t.ejected ? "ejected" : t.healthy ? "healthy" : "unhealthy" }),
            el("td", { text: String(t.weight) }), el("td", { text: fmt(t.effective_weight) }), el("td", { text: String(t.in_flight) })))))));
      const can = (s.canaries || []).map((c) => el("tr", {}, el("td", { text: c.route_id }), el("td", { text: c.upstream }), el("td", { text: c.weight + "%" }),
        el("td", { text: c.configured_weight + "%" }), el("td", { text: c.signal_weight == null ? "–" : c.signal_weight + "%" }),
        el("td", { class: c.rolled_back ? "bad" : "", text: (c.verdict || "not judged") + (c.rolled_back ? ", rolled back" : "") })));
      statusBox.replaceChildren(...ups, el("h2", { text: "Canaries" }),
        can.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["Route", "Upstream", "Weight", "Configured", "From signal", "Verdict"].map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, ...can))
          : el("p", { class: "muted", text: "No canary routes." }));
      if (!shown) {
        shown = true;
        show(el("h1", { text: "Gateway" }), statusBox, el("h2", { text: "Last 15 minutes" }), histNote, el("div", { class: "plots", id: "gw-history" }, ...plots.values()));
        gwTick();
        also(gwTick, TREND_MS);
      }
    });
  }

  async function route() {
    stop();
    const forget = document.getElementById("forget");
    forget.hidden = !sessionStorage.getItem(TOKEN);
    const parts = location.pathname.replace(/^\/ui\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
    try {
      if (parts[0] === "policies" && parts.length === 3) await policyPage(parts[1], parts[2]);
      else if (parts[0] === "flows") await flowsPage();
      else if (parts[0] === "gateway") await gatewayPage();
      else await policiesPage();
    } catch (e) { failed(e); }
  }
  document.getElementById("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN); route(); });
  route();
})();
