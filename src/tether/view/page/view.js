// tether view: runs, a run's timeline, the approvals inbox and a campaign's results.
//
// Every string from the store or a journal is set as text (textContent through el()), never as
// markup: journals hold model and tool output nobody vetted. The one exception is the campaign's
// headline and charts, which the server renders as escaped HTML (tether.evals.html) and which the
// page's Content-Security-Policy keeps script-free in any case.
"use strict";

const KIND_LABELS = { model: "chat", tool: "tool", step: "step", sleep: "sleep", wait: "wait",
                      decision: "decision" };
const main = document.getElementById("main");
let about = { store: null, campaign: null };
let shown = null;  // what the page shows now: {view, id?}
let pending = null;  // a refresh asked for while one is running

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = (body.error && body.error.message) || response.statusText;
    throw new Error(message);
  }
  return body;
}

function when(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + "Z";
}

function secs(value) {
  return value.toFixed(3) + " s";
}

function usd(value) {
  if (value > 0 && value < 0.001) return "$" + value.toFixed(6);
  return "$" + value.toLocaleString("en-US", { minimumFractionDigits: value < 10 ? 3 : 2,
                                               maximumFractionDigits: value < 10 ? 3 : 2 });
}

function count(n, noun) {
  return n.toLocaleString("en-US") + " " + noun + (n === 1 ? "" : (noun === "retry" ? "" : "s"));
}

function retries(n) {
  return n === 1 ? "1 retry" : n + " retries";
}

function statusTag(status) {
  return el("span", { class: "status s-" + status, text: status });
}

function errorBox(message) {
  return el("p", { class: "error-box", role: "alert" }, message);
}

// -- routing ----------------------------------------------------------------------------------

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?", 2);
  const params = new URLSearchParams(query || "");
  if (path.startsWith("run/")) return { view: "run", id: decodeURIComponent(path.slice(4)) };
  if (path === "approvals") return { view: "approvals" };
  if (path === "campaign") return { view: "campaign" };
  if (path === "runs") return { view: "runs", params };
  return { view: about.store ? "runs" : "campaign", params };
}

function runLink(id) {
  return "#/run/" + encodeURIComponent(id);
}

async function render() {
  const route = parseRoute();
  shown = route;
  for (const name of ["runs", "approvals", "campaign"]) {
    const link = document.getElementById("nav-" + name);
    link.classList.toggle("here", route.view === name || (name === "runs" && route.view === "run"));
  }
  let content;
  try {
    if (route.view === "run") content = await runView(route.id);
    else if (route.view === "approvals") content = await approvalsView();
    else if (route.view === "campaign") content = await campaignView();
    else content = await runsView(route.params);
  } catch (error) {
    content = errorBox(error.message);
  }
  if (shown !== route) return;  // the reader moved on while this loaded
  main.replaceChildren(content);
  main.dataset.view = route.view;
}

// A refresh keeps the reader's place: the page is redrawn from the same route, and at most one
// redraw runs at a time (changes arriving meanwhile are folded into one more).
async function refresh() {
  if (pending) { pending.again = true; return; }
  pending = { again: false };
  try {
    const top = window.scrollY;
    await render();
    window.scrollTo(0, top);
    await approvalBadge();
  } finally {
    const again = pending.again;
    pending = null;
    if (again) refresh();
  }
}

// -- runs -------------------------------------------------------------------------------------

const PAGE = 50;

async function runsView(params) {
  if (!about.store) return el("p", { class: "empty", text: "This viewer has no store: start it with tether view --store URL." });
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const query = new URLSearchParams();
  for (const key of ["status", "workflow", "queue"]) {
    if (params.get(key)) query.set(key, params.get(key));
  }
  query.set("offset", String((page - 1) * PAGE));
  query.set("limit", String(PAGE));
  const data = await api("/api/runs?" + query);
  const section = el("section", { id: "runs-view" });
  section.append(el("h2", { text: "Runs" }), filters(params, data));
  if (!data.runs.length) {
    section.append(el("p", { class: "empty", text: "No runs match." }));
    return section;
  }
  const table = el("table", { id: "runs" });
  const head = el("tr");
  for (const name of ["run", "workflow", "queue", "status", "events", "started", "duration", "owner"]) {
    head.append(el("th", { text: name }));
  }
  table.append(el("thead", {}, head));
  const body = el("tbody");
  for (const run of data.runs) {
    body.append(el("tr", { "data-run-id": run.run_id, "data-status": run.status },
      el("td", { class: "id" }, el("a", { href: runLink(run.run_id), text: run.run_id })),
      el("td", { text: run.workflow }),
      el("td", { text: run.queue }),
      el("td", {}, statusTag(run.status)),
      el("td", { class: "num", text: String(run.events) }),
      el("td", { text: when(run.created_at) }),
      el("td", { class: "num", text: secs(run.duration_s) }),
      el("td", { text: run.owner || "-" })));
  }
  table.append(body);
  section.append(el("div", { class: "scroll" }, table), pager(params, page, data));
  return section;
}

function filters(params, data) {
  const form = el("form", { class: "filters", id: "filters" });
  const total = Object.values(data.counts).reduce((a, b) => a + b, 0);
  const choices = {
    status: [["", "any status (" + total + ")"],
             ...Object.entries(data.counts).map(([s, n]) => [s, s + " (" + n + ")"])],
    workflow: [["", "any workflow"], ...data.workflows.map((w) => [w, w])],
    queue: [["", "any queue"], ...data.queues.map((q) => [q, q])],
  };
  for (const [name, options] of Object.entries(choices)) {
    const select = el("select", { id: "filter-" + name, name });
    for (const [value, label] of options) {
      const option = el("option", { value, text: label });
      if ((params.get(name) || "") === value) option.selected = true;
      select.append(option);
    }
    select.addEventListener("change", () => {
      const next = new URLSearchParams();
      for (const key of ["status", "workflow", "queue"]) {
        const value = form.elements[key].value;
        if (value) next.set(key, value);
      }
      location.hash = "#/runs" + (next.toString() ? "?" + next : "");
    });
    form.append(el("label", {}, name, select));
  }
  form.addEventListener("submit", (event) => event.preventDefault());
  return form;
}

function pager(params, page, data) {
  const pages = Math.max(1, Math.ceil(data.total / PAGE));
  const nav = el("nav", { class: "pager", "aria-label": "pages" });
  const go = (n) => {
    const next = new URLSearchParams(params);
    next.set("page", String(n));
    return "#/runs?" + next;
  };
  if (page > 1) nav.append(el("a", { href: go(page - 1), id: "prev", text: "← newer" }));
  nav.append(el("span", { class: "muted", id: "page-info",
                          text: `page ${page} of ${pages} · ${data.total} runs` }));
  if (page < pages) nav.append(el("a", { href: go(page + 1), id: "next", text: "older →" }));
  return nav;
}

// -- one run ----------------------------------------------------------------------------------

async function runView(id) {
  const data = await api("/api/runs/" + encodeURIComponent(id));
  const trace = data.trace;
  const run = data.run;
  const section = el("section", { id: "run-view", "data-run-id": run.run_id });
  section.append(el("p", {}, el("a", { href: "#/runs", text: "← runs" })));
  section.append(el("h2", {}, (trace.workflow || run.workflow) + " ",
                    el("code", { text: run.run_id }), " ", statusTag(trace.status)));
  const facts = el("dl", { class: "facts" });
  const fact = (name, value) => facts.append(el("dt", { text: name }), el("dd", {}, value));
  fact("queue", run.queue);
  fact("events", String(run.events));
  fact("started", when(run.created_at));
  fact("updated", when(run.updated_at));
  if (run.owner) fact("held by", run.owner);
  if (trace.conversation_id !== run.run_id) fact("session", trace.conversation_id);
  if (trace.reason) fact("reason", el("span", { id: "run-reason", text: trace.reason }));
  if (trace.error) {
    fact("error", el("span", { class: "bad", id: "run-error",
                               text: (trace.error.type || "") + ": " + (trace.error.message || "") }));
  }
  section.append(facts);
  for (const approval of data.approvals) section.append(approvalCard(approval, false));
  section.append(el("p", { class: "totals", id: "totals", text: data.totals_line }));
  const failures = Object.entries(trace.totals.failures);
  if (failures.length) {
    section.append(el("p", { class: "bad", text: "failures: " + failures.map(([k, n]) => k + " " + n).join(", ") }));
  }
  section.append(el("h3", { text: "Timeline" }));
  const span = Math.max(trace.totals.duration_s, 1e-9);
  const list = el("ul", { class: "timeline", id: "timeline" });
  for (const item of trace.items) list.append(timelineItem(item, span));
  if (!trace.items.length) list.append(el("li", { class: "empty", text: "Nothing yet." }));
  section.append(list);
  section.append(el("h3", { text: "Input" }), el("pre", { id: "run-input", text: JSON.stringify(data.input, null, 2) }));
  if (trace.status === "completed") {
    section.append(el("h3", { text: "Result" }), el("pre", { id: "run-result", text: JSON.stringify(data.result, null, 2) }));
  }
  section.append(el("h3", { text: "Journal" }));
  const journal = el("ol", { class: "journal", id: "journal" });
  for (const event of data.journal) {
    journal.append(el("li", { "data-seq": event.seq },
      el("span", { class: "seq", text: String(event.seq) }),
      el("span", { class: "ev", text: event.kind + (event.pos !== null ? " @" + event.pos : "") }),
      el("span", { class: "summary", text: event.summary })));
  }
  section.append(journal);
  return section;
}

function timelineItem(item, span) {
  const kind = KIND_LABELS[item.kind] || item.kind;
  const row = el("div", { class: "row" },
    el("span", { class: "offset", text: "+" + secs(item.offset_s) }),
    el("span", { class: "kind k-" + item.kind, text: kind }),
    item.name !== kind ? el("span", { class: "name", text: item.name }) : null,
    item.pos !== null ? el("span", { class: "pos", text: "@" + item.pos }) : null,
    item.kind !== "decision" ? el("span", { class: "muted", text: secs(item.duration_s) }) : null);
  if (item.kind === "model" && item.status === "ok") {
    row.append(el("span", { class: "tokens",
                            text: count(item.input_tokens + item.output_tokens, "token") + " " + usd(item.cost_usd) }));
  }
  if (item.retries) row.append(el("span", { class: "warn", text: retries(item.retries) }));
  if (item.status !== "ok") row.append(statusTag(item.status));
  if (item.failures.length) row.append(el("span", { class: "bad", text: item.failures.join(", ") }));
  if (item.error_type) row.append(el("span", { class: "bad", title: item.error_type,
                                               text: item.error_type.split(".").pop() }));
  if (item.detail) row.append(el("span", { class: "muted detail", text: item.detail }));
  const node = el("li", { class: "item " + item.status, "data-kind": item.kind,
                          "data-status": item.status }, row);
  if (item.kind !== "decision") {
    const bar = el("div", { class: "bar" });
    bar.style.left = Math.min(100, (item.offset_s / span) * 100) + "%";
    bar.style.width = Math.min(100, (item.duration_s / span) * 100) + "%";
    node.append(el("div", { class: "track" }, bar));
  }
  if (item.children.length) {
    const children = el("ul");
    for (const child of item.children) children.append(timelineItem(child, span));
    node.append(children);
  }
  return node;
}

// -- approvals --------------------------------------------------------------------------------

async function approvalsView() {
  if (!about.store) return el("p", { class: "empty", text: "This viewer has no store." });
  const approvals = await api("/api/approvals");
  const section = el("section", { id: "approvals" });
  section.append(el("h2", { text: "Approvals waiting" }));
  section.append(el("p", { class: "muted", text: "Decide with the command shown (it journals who decided, as --by, default $USER); the run continues when a worker resumes it." }));
  if (!approvals.length) section.append(el("p", { class: "empty", text: "No approvals waiting." }));
  for (const approval of approvals) section.append(approvalCard(approval, true));
  return section;
}

function approvalCard(approval, withRun) {
  const card = el("article", { class: "card approval", "data-run-id": approval.run_id,
                               "data-step": approval.step });
  card.append(el("h3", {}, approval.tool + " needs " + (approval.role || "any role"),
                 el("span", { class: "muted", text: " — step " + approval.step })));
  const facts = el("dl", { class: "facts" });
  const fact = (name, value) => facts.append(el("dt", { text: name }), el("dd", {}, value));
  if (withRun) fact("run", el("a", { href: runLink(approval.run_id), text: approval.run_id }));
  fact("for", approval.principal || "-");
  fact("why", el("span", { class: "reason", text: approval.reason }));
  fact("asked", when(approval.requested_at));
  if (approval.deadline !== null) fact("deadline", when(approval.deadline));
  fact("args", el("pre", { class: "args", text: JSON.stringify(approval.args, null, 2) }));
  fact("approve", el("pre", { class: "command approve", text: approval.approve }));
  fact("deny", el("pre", { class: "command deny", text: approval.deny }));
  card.append(facts);
  return card;
}

async function approvalBadge() {
  if (!about.store) return;
  try {
    const approvals = await api("/api/approvals");
    document.getElementById("approval-count").textContent = approvals.length ? String(approvals.length) : "";
  } catch (error) {
    // The badge is a convenience: the approvals page reports the error itself.
  }
}

// -- campaign ---------------------------------------------------------------------------------

async function campaignView() {
  if (!about.campaign) {
    return el("p", { class: "empty", text: "This viewer has no campaign: start it with tether view --store URL DIR, DIR being a folder written by tether eval run --out or tether demo --out." });
  }
  const data = await api("/api/campaign");
  const section = el("section", { id: "campaign" });
  section.append(el("h2", { text: data.name }),
                 el("p", { class: "muted", text: `${data.folder}: ${data.episodes} episodes — ${data.scenarios.length} scenarios × ${data.suites.length} suites × ${data.harnesses.length} harnesses × ${data.seeds} seeds; ${data.failures} failure cases` }));
  section.append(trusted(data.headline_html));
  const table = el("table", { id: "cells" });
  const head = el("tr");
  for (const name of ["harness", "suite", "conclusive", "passed", "pass rate", "95% interval", "violations", "duplicates", "recovery", "cost/episode"]) {
    head.append(el("th", { text: name }));
  }
  table.append(el("thead", {}, head));
  const body = el("tbody");
  const pct = (v) => (v === null ? "inconclusive" : (v * 100).toFixed(1) + "%");
  for (const c of data.cells) {
    body.append(el("tr", {},
      el("td", { text: c.harness }), el("td", { text: c.suite }),
      el("td", { class: "num", text: c.conclusive + "/" + c.episodes }),
      el("td", { class: "num", text: String(c.passed) }),
      el("td", { class: "num", text: pct(c.pass_rate) }),
      el("td", { class: "num", text: c.interval ? pct(c.interval[0]) + "–" + pct(c.interval[1]) : "-" }),
      el("td", { class: "num", text: String(c.violations) }),
      el("td", { class: "num", text: String(c.duplicate_effects) }),
      el("td", { class: "num", text: c.recovery_rate === null ? "-" : pct(c.recovery_rate) }),
      el("td", { class: "num", text: usd(c.mean_cost_usd) })));
  }
  table.append(body);
  section.append(el("div", { class: "scroll" }, table));
  section.append(trusted(data.charts_html));
  if (data.has_report) {
    section.append(el("h3", { text: "The full report" }),
                   el("p", {}, el("a", { href: "/campaign/report.html", target: "_blank", rel: "noopener", text: "Open report.html" })),
                   el("iframe", { class: "report", src: "/campaign/report.html", title: "campaign report", sandbox: "" }));
  }
  return section;
}

// The server's own rendering of the report's sections: escaped there (tether.evals.html).
function trusted(html) {
  const holder = el("div", { class: "from-report" });
  const template = document.createElement("template");
  template.innerHTML = html;
  holder.append(template.content);
  return holder;
}

// -- live updates -----------------------------------------------------------------------------

function listen() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("hello", () => {
    live.className = "live on";
    live.textContent = "live";
    // The server listens from now on; what moved before (while the page loaded, or while a
    // restarted viewer was away) was announced to nobody, so redraw once. A campaign does
    // not move: its page (and its framed report) is left as it is.
    if (parseRoute().view !== "campaign") refresh();
  });
  source.addEventListener("runs", (event) => {
    const changes = JSON.parse(event.data);
    window.viewUpdates = (window.viewUpdates || 0) + 1;
    const route = parseRoute();
    if (route.view === "run" && !changes.more && !changes.changed.includes(route.id)) {
      approvalBadge();
      return;
    }
    if (route.view === "campaign") { approvalBadge(); return; }
    refresh();
  });
  source.onerror = () => {
    live.className = "live off";
    live.textContent = "reconnecting…";
  };
}

async function start() {
  try {
    about = await api("/api/about");
  } catch (error) {
    main.replaceChildren(errorBox(error.message));
    return;
  }
  document.getElementById("nav-runs").hidden = !about.store;
  document.getElementById("nav-approvals").hidden = !about.store;
  document.getElementById("nav-campaign").hidden = !about.campaign;
  window.addEventListener("hashchange", render);
  await render();
  await approvalBadge();
  if (about.store) listen();
  else document.getElementById("live").hidden = true;
}

start();
