// The chat page of `tether serve`: plain JavaScript, no build step, nothing off this host.
//
// Every API call sends the key (kept in sessionStorage) as a bearer. A run's events arrive
// as server-sent events read with fetch + ReadableStream (EventSource can send neither a POST
// body nor an Authorization header). Each run remembers the last event id it showed; a
// dropped connection is resumed with Last-Event-ID after a backoff, and an event whose id was
// already shown is skipped, so a turn is shown once however often the stream is resumed.
// A run that waits (a client tool, an approval) stays followed on one stream that goes on
// through its waits (?until=finished): an answer or a decision made elsewhere shows when it is
// made, and the page asks the server nothing more until an event comes or the stream drops.
// The page keeps its own copy of each session's history (localStorage); a session that
// expired, or that the server lost, is restored from that copy with the Restore control.
// Text from the server is only ever inserted as text (textContent), never as markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = "tether.key";
  const TERMINAL = new Set(["turn.finished", "run.waiting"]);
  const FINISHED = new Set(["turn.finished"]);
  const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
  const MAX_ATTEMPTS = 40;
  const HISTORY = "tether.history.";
  const MESSAGE_FIELDS = ["role", "content", "tool_calls", "tool_call_id"];

  let sessionId = null;
  const runs = new Map(); // run id -> run state (below)
  let busy = 0; // streams open or reconnecting

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function status(text) {
    $("status").textContent = text || "";
  }

  function key() {
    return sessionStorage.getItem(KEY) || "";
  }

  function headers(extra) {
    return Object.assign({ Authorization: "Bearer " + key() }, extra || {});
  }

  async function api(method, path, body) {
    const init = { method: method, headers: headers() };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init);
  }

  async function problem(response) {
    try {
      const body = await response.json();
      return body.error || { type: "http_" + response.status, message: response.statusText };
    } catch (e) {
      return { type: "http_" + response.status, message: response.statusText };
    }
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  // -- runs and their streams -------------------------------------------------------------

  function runOf(runId) {
    let run = runs.get(runId);
    if (!run) {
      const box = el("section", "turn");
      box.dataset.run = runId;
      $("log").appendChild(box);
      run = { id: runId, lastId: 0, box: box, delta: null, calls: new Map(),
              revisions: new Set(), state: null, following: false, again: false,
              done: false, waiting: false, reader: null };
      runs.set(runId, run);
    }
    return run;
  }

  // Reads SSE frames from a fetch response; calls onFrame(id|null, type, data) for each.
  // Resolves true when a terminal event (of `terminal`) was read, false when the stream
  // ended without one.
  async function readFrames(response, onFrame, terminal, run) {
    const reader = response.body.getReader();
    run.reader = reader; // cancelled when another session is opened
    const decoder = new TextDecoder();
    let buffer = "";
    let frame = { id: null, event: "", data: [] };
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) return false;
      buffer += decoder.decode(chunk.value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (frame.data.length) {
            const type = frame.event || "message";
            onFrame(frame.id, type, JSON.parse(frame.data.join("\n")));
            if (terminal.has(type)) {
              reader.cancel().catch(() => {});
              return true;
            }
          }
          frame = { id: null, event: "", data: [] };
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "id") frame.id = value === "" ? null : Number(value);
        else if (field === "event") frame.event = value;
        else if (field === "data") frame.data.push(value);
      }
    }
  }

  // Follows a run's stream to the turn's end: `first` is the response that opened it (a fire's
  // or a continue's, which ends when the run waits), or null to open it with GET .../events
  // after the last id shown, through the run's waits.
  async function follow(runId, first) {
    const run = runOf(runId);
    if (run.done) return;
    if (run.following) {
      // One stream per run (two would show its text deltas twice): the open one reads on
      // after its end instead, from the last id shown.
      run.again = true;
      if (first !== null) first.body.cancel().catch(() => {});
      return;
    }
    run.following = true;
    busy += 1;
    let response = first;
    let attempt = 0;
    try {
      for (;;) {
        try {
          if (response === null) {
            response = await fetch("/v1/executions/" + encodeURIComponent(runId) +
                                   "/events?until=finished",
                                   { headers: headers({ "Last-Event-ID": String(run.lastId) }) });
            if (!response.ok) {
              const error = await problem(response);
              if (response.status >= 400 && response.status < 500) {
                showState(run, "error", error.message);
                return;
              }
              throw new Error(error.message);
            }
          }
          if (runs.get(runId) !== run) {
            response.body.cancel().catch(() => {});
            return; // another session was opened meanwhile
          }
          const ended = await readFrames(response, (id, type, data) => {
            attempt = 0;
            status("");
            onEvent(run, id, type, data);
          }, response === first ? TERMINAL : FINISHED, run);
          if (ended) {
            status("");
            if (!run.done && runs.get(runId) === run) {
              // The run waits: follow it on through its waits (someone else may answer or
              // decide), on one stream that speaks only when something happens.
              run.again = false;
              response = null;
              continue;
            }
            saveHistory();
            return;
          }
        } catch (e) {
          // The connection dropped (or the server is away): resume below.
        }
        if (runs.get(runId) !== run) return; // another session was opened meanwhile
        response = null;
        attempt += 1;
        if (attempt > MAX_ATTEMPTS) {
          status("the connection is lost; reload the page to try again");
          return;
        }
        status("reconnecting…");
        await sleep(BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)]);
      }
    } finally {
      run.following = false;
      busy -= 1;
    }
  }

  function onEvent(run, id, type, data) {
    if (id !== null) {
      if (id <= run.lastId) return; // already shown: a resumed stream replays nothing twice
      run.lastId = id;
      run.waiting = false;
    }
    const render = RENDER[type];
    if (render) render(run, data, id);
  }

  function add(run, node, id) {
    if (id !== null && id !== undefined) node.dataset.seq = String(id);
    run.box.appendChild(node);
    scroll();
    return node;
  }

  function scroll() {
    const log = $("log");
    log.scrollTop = log.scrollHeight;
  }

  function assistant(run, text, id) {
    if (run.delta) {
      run.delta.remove();
      run.delta = null;
    }
    if (text) add(run, el("div", "msg assistant", text), id);
  }

  function showState(run, kind, text) {
    if (!run.state) run.state = add(run, el("div", "state"), null);
    run.state.className = "state " + kind;
    run.state.textContent = text;
    run.box.appendChild(run.state); // keep it last
  }

  function describe(args) {
    try {
      const text = JSON.stringify(args);
      return text.length > 120 ? text.slice(0, 117) + "…" : text;
    } catch (e) {
      return "";
    }
  }

  const RENDER = {
    "turn.started": (run, data, id) => {
      if (data.input) add(run, el("div", "msg user", data.input), id);
      else add(run, el("div", "tool", "turn " + (data.turn || "") + " started"), id);
      showState(run, "running", "working…");
    },
    "model.delta": (run, data) => {
      if (!run.delta) run.delta = add(run, el("div", "msg assistant streaming", ""), null);
      run.delta.textContent += data.text || "";
      showState(run, "running", "working…");
    },
    "model.text": (run, data, id) => assistant(run, data.text, id),
    "tool.requested": (run, data, id) => {
      assistant(run, data.text, id);
      for (const call of data.calls || []) {
        const line = add(run, el("div", "tool", "→ " + call.tool + " " + describe(call.arguments)),
                         id);
        run.calls.set(call.call_id, line);
      }
    },
    "tool.started": () => {},
    "tool.finished": (run, data, id) => {
      const text = "← " + (data.tool || "") + ": " + data.status +
        (data.error && data.error.message ? " (" + data.error.message + ")" : "");
      add(run, el("div", "tool", text), id);
      if (data.client) {
        // Answered (or timed out): a form shown again by a replay takes no second answer.
        for (const form of run.box.querySelectorAll("form.client-tool")) {
          if (form.dataset.call !== String(data.call_id)) continue;
          for (const control of form.querySelectorAll("input, select, button")) {
            control.disabled = true;
          }
        }
      }
    },
    "resource.updated": (run, data) => {
      const mark = data.name + "@" + data.revision;
      if (run.revisions.has(mark)) return; // sent again when a stream resumes before it
      run.revisions.add(mark);
      add(run, el("div", "tool", "✎ " + data.name + " is now version " + data.version), null);
    },
    "client_tool.requested": (run, data, id) => add(run, clientForm(run, data), id),
    "approval.requested": (run, data, id) => add(run, approvalCard(run, data), id),
    "approval.decided": (run, data, id) => {
      const by = data.by ? " by " + data.by : "";
      add(run, el("div", "tool", "approval " + data.decision + by), id);
      for (const card of run.box.querySelectorAll(".approval[data-step='" + data.step + "']")) {
        for (const button of card.querySelectorAll("button")) button.disabled = true;
      }
    },
    "run.waiting": (run, data) => {
      run.waiting = true;
      saveHistory();
      const waits = (data.waiting_for || []).map((w) => w.kind || w.key || "").join(", ");
      showState(run, "waiting", "waiting" + (waits ? " for " + waits : ""));
    },
    "turn.finished": (run, data, id) => {
      run.done = true;
      if (run.delta) assistant(run, "", null);
      const reason = data.status === "completed" ? "" : " — " + (data.reason || "");
      showState(run, data.status, "turn " + data.status + reason);
      if (run.state) run.state.dataset.seq = String(id);
    },
  };

  // -- client tool forms, from the result's JSON Schema -----------------------------------

  function fieldFor(name, schema, required) {
    const label = el("label", "", (schema.title || name) + (required ? " *" : "") + " ");
    let input;
    if (Array.isArray(schema.enum)) {
      input = el("select");
      for (const option of schema.enum) {
        const node = el("option", "", option);
        node.value = JSON.stringify(option);
        input.appendChild(node);
      }
      input.dataset.kind = "enum";
    } else if (schema.type === "boolean") {
      input = el("input");
      input.type = "checkbox";
      input.dataset.kind = "boolean";
    } else if (schema.type === "integer" || schema.type === "number") {
      input = el("input");
      input.type = "number";
      input.step = schema.type === "integer" ? "1" : "any";
      input.required = required;
      input.dataset.kind = schema.type;
    } else {
      input = el("input");
      input.type = "text";
      input.required = required;
      input.dataset.kind = "string";
    }
    input.name = name;
    if (schema.description) input.title = schema.description;
    label.appendChild(input);
    return label;
  }

  function valueOf(input) {
    const kind = input.dataset.kind;
    if (kind === "boolean") return input.checked;
    if (kind === "enum") return JSON.parse(input.value);
    if (kind === "integer") return input.value === "" ? undefined : parseInt(input.value, 10);
    if (kind === "number") return input.value === "" ? undefined : Number(input.value);
    return input.value;
  }

  function clientForm(run, data) {
    const form = el("form", "card client-tool");
    form.dataset.call = data.call_id;
    form.appendChild(el("div", "", data.tool + " " + describe(data.arguments)));
    const schema = data.result_schema || {};
    const required = new Set(schema.required || []);
    const single = schema.type !== "object";
    if (single) form.appendChild(fieldFor("value", schema, true));
    else {
      for (const [name, sub] of Object.entries(schema.properties || {})) {
        form.appendChild(fieldFor(name, sub || {}, required.has(name)));
      }
    }
    const submit = el("button", "", "Send answer");
    submit.type = "submit";
    form.appendChild(submit);
    const error = form.appendChild(el("div", "error"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      let result = {};
      for (const input of form.querySelectorAll("input, select")) {
        const value = valueOf(input);
        if (value !== undefined) result[input.name] = value;
      }
      if (single) result = result.value;
      submit.disabled = true;
      error.textContent = "";
      const results = {};
      results[data.call_id] = result;
      try {
        const response = await api("POST", "/v1/executions/" +
          encodeURIComponent(data.execution_id) + "/continue", { results: results });
        if (!response.ok) {
          const refused = await problem(response);
          error.textContent = refused.message;
          submit.disabled = response.status === 409;
          return;
        }
        for (const input of form.querySelectorAll("input, select")) input.disabled = true;
        await follow(run.id, response);
      } catch (e) {
        // The answer may or may not have arrived: the run's stream says which.
        await follow(run.id, null);
      }
    });
    return form;
  }

  // -- approvals ----------------------------------------------------------------------------

  function approvalCard(run, data) {
    const card = el("div", "card approval");
    card.dataset.step = String(data.step);
    card.appendChild(el("div", "", "approval needed (" + (data.role || "any role") + "): " +
                        data.tool + " " + describe(data.args)));
    if (data.why) card.appendChild(el("div", "", data.why));
    const error = el("div", "error");
    for (const [label, action] of [["Approve", "approve"], ["Deny", "deny"]]) {
      const button = el("button", action, label);
      button.type = "button";
      button.addEventListener("click", async () => {
        error.textContent = "";
        const response = await api("POST", "/v1/approvals/" + encodeURIComponent(run.id) +
                                   "/" + action, { step: data.step });
        if (response.status === 403) {
          error.textContent = "this key cannot decide: needs role " + (data.role || "?");
          return;
        }
        if (!response.ok) {
          error.textContent = (await problem(response)).message;
          return;
        }
        for (const b of card.querySelectorAll("button")) b.disabled = true;
        await follow(run.id, null);
      });
      card.appendChild(button);
    }
    card.appendChild(error);
    return card;
  }

  // -- sessions and messages ----------------------------------------------------------------

  // -- the page's copy of a session's history, and restoring from it -------------------------

  function historyKey(sid) {
    return HISTORY + sid;
  }

  function savedHistory(sid) {
    try {
      const saved = JSON.parse(localStorage.getItem(historyKey(sid)) || "null");
      return saved && Array.isArray(saved.history) ? saved : null;
    } catch (e) {
      return null;
    }
  }

  // Keeps the session's history as the server shows it now (messages only: what restore
  // takes), after each turn ends or waits. A copy is never replaced by a shorter one: a
  // restored session starts from the copy, and its later turns add to it.
  // Turns ending together (a session's turns replayed when it is opened) read it once more,
  // not once each.
  let saving = null;
  let saveAgain = false;

  function saveHistory() {
    if (saving !== null) {
      saveAgain = true;
      return saving;
    }
    saving = (async () => {
      do {
        saveAgain = false;
        const sid = sessionId;
        if (sid === null) break;
        try {
          const response = await api("GET", "/v1/sessions/" + encodeURIComponent(sid));
          if (response.ok && sid === sessionId) keepHistory(await response.json());
        } catch (e) {
          // Kept as it was: the next turn's end tries again.
        }
      } while (saveAgain);
      saving = null;
    })();
    return saving;
  }

  function keepHistory(view) {
    const history = (view.history || []).map((row) => {
      const message = {};
      for (const field of MESSAGE_FIELDS) {
        if (row[field] !== undefined && row[field] !== null) message[field] = row[field];
      }
      return message;
    });
    const saved = savedHistory(view.id);
    if (saved && saved.history.length > history.length) return;
    localStorage.setItem(historyKey(view.id),
                         JSON.stringify({ agent: view.agent, history: history }));
  }

  function clearSession() {
    for (const run of runs.values()) {
      run.box.remove();
      // A stream following a waiting run would stay open for nothing (and hold one of the
      // browser's few connections to this server).
      if (run.reader) run.reader.cancel().catch(() => {});
    }
    runs.clear();
    $("restore-panel").hidden = true;
  }

  // Offers to restore session `sid` (expired, or lost by the server when `lost`) from the
  // page's copy of its history.
  function offerRestore(agent, sid, lost) {
    const saved = savedHistory(sid);
    const panel = $("restore-panel");
    $("restore").disabled = saved === null;
    $("restore-text").textContent = (lost ? "The server no longer has session " + sid :
      "Session " + sid + " has expired") + (saved === null ?
      "; this page holds no copy of its history to restore it from." :
      ". This page holds a copy of its history (" + saved.history.length + " messages).");
    panel.dataset.agent = agent;
    panel.dataset.session = sid;
    panel.dataset.lost = lost ? "1" : "";
    panel.hidden = false;
    $("send").disabled = true;
  }

  async function restore() {
    const panel = $("restore-panel");
    const sid = panel.dataset.session;
    const saved = savedHistory(sid);
    if (!saved) return;
    const body = { history: saved.history };
    if (panel.dataset.lost) body.agent = saved.agent || panel.dataset.agent;
    $("restore").disabled = true;
    const response = await api("POST", "/v1/sessions/" + encodeURIComponent(sid) + "/restore",
                               body);
    if (!response.ok) {
      status((await problem(response)).message);
      $("restore").disabled = false;
      return;
    }
    status("restored from this page's copy");
    await open(panel.dataset.agent, sid, { restored: true });
  }

  async function open(agent, sid, options) {
    sessionId = null;
    $("send").disabled = true;
    let response = await api("GET", "/v1/sessions/" + encodeURIComponent(sid));
    if (response.status === 404 && savedHistory(sid) !== null && !(options || {}).fresh) {
      clearSession();
      offerRestore(agent, sid, true);
      return;
    }
    if (response.status === 404) {
      response = await api("POST", "/v1/sessions", { agent: agent, session_id: sid });
    }
    if (!response.ok) {
      status((await problem(response)).message);
      return;
    }
    const view = await response.json();
    clearSession();
    sessionId = view.id;
    if (!(options || {}).restored) status("");
    if (view.status === "expired") {
      offerRestore(view.agent, view.id, false);
    } else {
      keepHistory(view);
      $("send").disabled = view.status !== "active";
    }
    // Each turn's run is replayed from its start, then followed if it is still going.
    for (const turn of view.turns) runOf(turn.run_id);
    await Promise.all(view.turns.map((turn) => follow(turn.run_id, null)));
  }

  function newKey() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return "page-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  // Sends a message once: under the session's revision as read just before (and a key), so
  // a retry after an answer that never arrived cannot start a second turn; it is refused as a
  // conflict (or answered with the session), and the page then shows the session as stored.
  async function send(text) {
    const sid = sessionId;
    const base = "/v1/sessions/" + encodeURIComponent(sid);
    let view;
    try {
      const read = await api("GET", base);
      if (!read.ok) {
        status((await problem(read)).message);
        $("message").value = text;
        return;
      }
      view = await read.json();
    } catch (e) {
      status("the server cannot be reached; try again");
      $("message").value = text;
      return;
    }
    const body = { input: { text: text }, key: newKey(), expected_revision: view.revision };
    for (let attempt = 1; ; attempt += 1) {
      let response;
      try {
        response = await api("POST", base + "/triggers/user-message", body);
      } catch (e) {
        if (attempt >= MAX_ATTEMPTS) {
          status("the connection is lost; reload the page to try again");
          return;
        }
        status("reconnecting…");
        await sleep(BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)]);
        continue;
      }
      status("");
      const runId = response.headers.get("Tether-Run-Id");
      if (response.ok && runId !== null) {
        const run = runOf(runId);
        const after = Number(response.headers.get("Tether-After") || "0");
        if (after > run.lastId) run.lastId = after;
        await follow(runId, response);
        return;
      }
      if (response.ok || (attempt > 1 && response.status === 409)) {
        // An earlier attempt arrived after all: show the session as stored.
        await open(view.agent, sid);
        return;
      }
      const refused = await problem(response);
      if (refused.type === "session_expired") {
        offerRestore(view.agent, sid, false);
        status(refused.message);
      } else if (refused.type === "session_conflict") {
        await open(view.agent, sid);
        status("the session changed meanwhile; it is shown as stored now: send again");
      } else {
        status(refused.message);
      }
      $("message").value = text;
      return;
    }
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("key").value.trim());
    $("key").value = "";
    $("who").textContent = "key set";
  });

  $("session-form").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!key()) {
      status("enter an API key first");
      return;
    }
    open($("agent").value.trim(), $("session").value.trim());
  });

  $("message-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value;
    if (!text.trim() || sessionId === null) return;
    $("message").value = "";
    send(text);
  });

  $("restore").addEventListener("click", () => restore());
  $("start-over").addEventListener("click", () => {
    const panel = $("restore-panel");
    localStorage.removeItem(historyKey(panel.dataset.session));
    open(panel.dataset.agent, panel.dataset.session, { fresh: true });
  });

  if (key()) $("who").textContent = "key set";
  // For tests and tools: how many streams are catching up (open or being resumed, not
  // counting those following a run that waits), and how many streams follow runs at all.
  window.tetherChat = {
    busy: () => busy - [...runs.values()].filter((r) => r.following && r.waiting).length,
    following: () => [...runs.values()].filter((r) => r.following).length,
    session: () => sessionId,
  };
})();
