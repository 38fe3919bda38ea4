// The gpuq dashboard's one script (no build step, no library): it refreshes the panels the server renders,
// follows a job's output over its Server-Sent Events stream, lists recent events, and sends the buttons'
// POSTs with the session's CSRF token. The session cookie goes along by itself (same origin, HttpOnly):
// no API key is ever in this page.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="gpuq-csrf"]').content;
  const refreshMs = Number(document.querySelector('meta[name="gpuq-refresh-ms"]').content) || 3000;
  const EVENTS_SHOWN = 25;
  const EVENT_PAGES = 10; // pages of /v1/events read per refresh while catching up
  const $ = (id) => document.getElementById(id);

  let stream = null;
  let watched = null;
  let outputText = null;
  let eventsCursor = null;
  let eventsMissing = false;
  let tick = 0;
  const events = [];

  function flash(text, isError) {
    const box = $("flash");
    box.textContent = text;
    box.className = isError ? "error" : "ok";
    box.hidden = false;
  }

  // Every call of the page: same-origin, cookie attached; a POST carries the CSRF token. A 401 means the
  // session ended (expired, logged out elsewhere): back to the login page.
  async function call(method, url) {
    const headers = method === "GET" ? {} : { "X-CSRF-Token": csrf };
    const response = await fetch(url, { method, headers, credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      window.location.assign("/ui");
      throw new Error("the session ended");
    }
    return response;
  }

  function markWatched() {
    for (const row of document.querySelectorAll("tr.job")) {
      row.classList.toggle("watched", row.dataset.job === watched);
    }
  }

  async function refreshPanels() {
    const response = await call("GET", "/ui/panels");
    if (!response.ok) return;
    const fresh = await response.json();
    for (const name of ["jobs", "fleet", "cost"]) {
      $(name).innerHTML = fresh[name]; // server-rendered, every value escaped there
    }
    $("updated").textContent = "updated " + fresh.updated;
    markWatched();
  }

  // --- recent events: GET /v1/events, oldest first, followed by its cursor ---------------------------
  function summary(data) {
    return Object.entries(data || {})
      .filter(([, value]) => value !== null && typeof value !== "object")
      .slice(0, 4)
      .map(([key, value]) => key + "=" + value)
      .join(" ");
  }

  function renderEvents() {
    const list = $("events");
    list.replaceChildren();
    if (events.length === 0) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "No events yet.";
      list.append(empty);
      return;
    }
    for (const event of [...events].reverse()) {
      const item = document.createElement("li");
      item.dataset.type = event.type;
      const when = document.createElement("time");
      when.dateTime = event.time;
      when.textContent = new Date(event.time).toISOString().slice(11, 19);
      const type = document.createElement("code");
      type.className = "type";
      type.textContent = event.type;
      const subject = document.createElement("span");
      subject.className = "subject";
      subject.textContent = event.subject || "";
      const data = document.createElement("span");
      data.className = "muted";
      data.textContent = summary(event.data);
      item.append(when, " ", type, " ", subject, " ", data);
      list.append(item);
    }
  }

  async function refreshEvents() {
    if (eventsMissing && tick % 10 !== 0) return; // no events route here: ask again now and then
    for (let page = 0; page < EVENT_PAGES; page++) {
      const query = new URLSearchParams({ limit: "100" });
      if (eventsCursor) query.set("since", eventsCursor);
      const response = await call("GET", "/v1/events?" + query);
      eventsMissing = response.status === 404;
      if (!response.ok) break;
      const body = await response.json();
      events.push(...body.data);
      events.splice(0, Math.max(0, events.length - EVENTS_SHOWN));
      if (body.next) eventsCursor = body.next;
      if (!body.has_more) break;
    }
    renderEvents();
  }

  // --- live output of one job: GET /v1/jobs/{id}/stream -------------------------------------------------
  function setOutputStatus(status, reason) {
    const line = $("output-status");
    line.dataset.status = status;
    line.className = "status-line status-" + status;
    line.textContent = status + (reason ? " · " + reason.replaceAll("_", " ") : "");
  }

  function watch(jobId) {
    if (stream) stream.close();
    watched = jobId;
    markWatched();
    $("output-job").textContent = jobId;
    outputText = document.createTextNode("");
    $("output").replaceChildren(outputText);
    setOutputStatus("connecting");
    // EventSource resumes by itself after a dropped connection (Last-Event-ID): nothing lost or repeated.
    const source = new EventSource("/v1/jobs/" + encodeURIComponent(jobId) + "/stream");
    stream = source;
    source.addEventListener("status", (e) => {
      const s = JSON.parse(e.data);
      setOutputStatus(s.status, s.status_reason);
    });
    source.addEventListener("output", (e) => outputText.appendData(JSON.parse(e.data).text));
    source.addEventListener("reset", () => outputText.replaceData(0, outputText.length, ""));
    source.addEventListener("done", (e) => {
      const job = JSON.parse(e.data);
      source.close();
      setOutputStatus(job.status, job.status_reason);
    });
    source.addEventListener("error", (e) => {
      if (e.data) {
        source.close();
        setOutputStatus("stream-error", JSON.parse(e.data).error.message);
      } else if (source.readyState === EventSource.CLOSED) {
        setOutputStatus("stream-closed");
      }
    });
  }

  // --- the buttons ---------------------------------------------------------------------------------
  async function act(action, jobId) {
    const path = action === "cancel" ? "/cancel" : "/callback/resend";
    const response = await call("POST", "/v1/jobs/" + encodeURIComponent(jobId) + path);
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      flash(action + " " + jobId + ": " + (body.error ? body.error.message : "HTTP " + response.status), true);
    } else if (action === "cancel") {
      flash("Cancelled " + jobId + ".");
    } else {
      flash("Re-sent " + body.resent.length + " failed callback(s) of " + jobId + ".");
    }
    await refreshPanels();
  }

  document.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const { action, job } = button.dataset;
    if (action === "watch") {
      watch(job);
      return;
    }
    button.disabled = true;
    act(action, job).catch((err) => flash(String(err), true));
  });

  // --- the refresh loop: one refresh at a time, none while the tab is hidden ---------------------------
  async function refresh() {
    tick += 1;
    if (!document.hidden) {
      await Promise.all([refreshPanels(), refreshEvents()]).catch(() => {}); // retried next time
    }
    window.setTimeout(refresh, refreshMs);
  }

  refreshEvents().catch(() => {});
  window.setTimeout(refresh, refreshMs);
})();
