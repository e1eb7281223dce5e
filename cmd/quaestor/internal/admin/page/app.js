// quaestor's status page: reads api/status every second and renders it.
//
// Rows are keyed (a service, an endpoint, a process) and updated in place,
// so an open log, a text selection or a scroll position survives the
// refresh. Text from the data reaches the DOM through textContent and
// attributes only, never as HTML.
"use strict";

(() => {
  const refreshEvery = 1000; // ms from the end of one fetch to the next
  const fetchTimeout = 5000; // ms before a fetch counts as failed

  const byId = (id) => document.getElementById(id);

  // el makes an element with a class and a text.
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // The setters write only what changed: rewriting an unchanged text would
  // drop the user's selection in it.
  function setText(node, text) {
    text = String(text);
    if (node.textContent !== text) node.textContent = text;
  }
  function setData(node, key, value) {
    value = String(value);
    if (node.dataset[key] !== value) node.dataset[key] = value;
  }
  function setClass(node, className) {
    if (node.className !== className) node.className = className;
  }
  function setTitle(node, title) {
    if (node.title !== title) node.title = title;
  }

  // sync makes the keyed children of parent match items, in order: it
  // updates the child with an item's key in place, creates the missing ones
  // and removes the others. Children without a data-key (a thead) stay.
  function sync(parent, items, keyOf, create, update) {
    const old = new Map();
    for (const child of parent.children) {
      if (child.dataset.key !== undefined) old.set(child.dataset.key, child);
    }
    let cursor = [...parent.children].find((c) => c.dataset.key !== undefined) || null;
    items.forEach((item, i) => {
      const key = keyOf(item, i);
      let node = old.get(key);
      if (node) {
        old.delete(key);
      } else {
        node = create(item);
        node.dataset.key = key;
      }
      update(node, item, i);
      if (node === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        parent.insertBefore(node, cursor);
      }
    });
    for (const node of old.values()) node.remove();
  }

  // time parses an RFC 3339 time; null for Go's zero time.
  function time(s) {
    const t = Date.parse(s);
    return Number.isNaN(t) || t <= 0 ? null : t;
  }

  function duration(ms) {
    let s = Math.max(0, Math.floor(ms / 1000));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }

  function millis(ms) {
    if (!(ms > 0)) return "-";
    if (ms < 10) return `${ms.toFixed(2)} ms`;
    if (ms < 100) return `${ms.toFixed(1)} ms`;
    return `${Math.round(ms)} ms`;
  }

  const plural = (n, one, many) => `${n} ${n === 1 ? one : many || one + "s"}`;

  // ---- header ----

  function renderHeader(snap, now) {
    setText(byId("version"), snap.version || "-");
    const started = time(snap.started_at);
    setText(byId("uptime"), started ? duration(now - started) : "-");
    if (started) setTitle(byId("uptime"), `since ${new Date(started).toLocaleString()}`);

    const etcd = snap.etcd;
    const box = byId("etcd");
    const state = byId("etcd-state");
    const detail = byId("etcd-detail");
    const alert = byId("etcd-error");
    if (!etcd) {
      setData(box, "ready", "none");
      setText(state, "none");
      setClass(state, "badge neutral");
      setText(detail, "static endpoints only");
      alert.hidden = true;
      return;
    }
    setData(box, "ready", etcd.ready);
    setText(state, etcd.ready ? "ready" : "NOT READY");
    setClass(state, etcd.ready ? "badge ok" : "badge bad");
    const facts = [etcd.mode, `revision ${etcd.revision}`, plural(etcd.watch_restarts, "watch restart")];
    if (etcd.entries_skipped > 0) facts.push(plural(etcd.entries_skipped, "entry", "entries") + " skipped");
    if (!etcd.connected) facts.push("not connected");
    else if (!etcd.watching) facts.push("not watching");
    setText(detail, facts.join(" · "));
    setTitle(detail, etcd.last_error ? `last error: ${etcd.last_error}` : "");
    alert.hidden = etcd.ready;
    if (!etcd.ready) {
      setText(alert, "etcd is not ready: routing on the last known endpoints" +
        (etcd.last_error ? ` (last error: ${etcd.last_error})` : "") + ".");
    }
  }

  // ---- services ----

  function endpointHealth(ep) {
    if (ep.ejected) return "ejected";
    return ep.healthy ? "healthy" : "unhealthy";
  }
  const healthClass = { healthy: "badge ok", unhealthy: "badge bad", ejected: "badge warn" };

  function createEndpointRow(item) {
    const tr = el("tr");
    if (!item.ep) {
      tr.append(el("td", "svc"), el("td", "policy"), el("td", "muted none"));
      tr.lastChild.colSpan = 7;
      return tr;
    }
    const addr = el("td", "addr");
    addr.append(el("span", "mono"), el("span", "muted id"));
    const health = el("td");
    health.append(el("span"));
    const load = el("td", "num load");
    const meter = el("meter");
    Object.assign(meter, { min: 0, max: 1, low: 0.6, high: 0.85, optimum: 0 });
    load.append(el("span"), meter);
    tr.append(el("td", "svc"), el("td", "policy"), addr, el("td", "source"), health,
      el("td", "num inflight"), load, el("td", "num picks"), el("td", "num latency"));
    return tr;
  }

  function updateEndpointRow(tr, item, i) {
    const { svc, ep } = item;
    const cells = tr.cells;
    setData(tr, "service", svc.name);
    // The service's name and policy head its group only.
    setText(cells[0], i === 0 ? svc.name : "");
    setText(cells[1], i === 0 ? svc.policy : "");
    if (!ep) {
      setText(cells[2], "no endpoints");
      return;
    }
    const health = endpointHealth(ep);
    setData(tr, "endpoint", ep.addr);
    setData(tr, "health", health);
    const [addr, id] = cells[2].children;
    setText(addr, ep.addr);
    setText(id, ep.id && ep.id !== ep.addr ? ep.id : "");
    setText(cells[3], ep.source || "-");
    const badge = cells[4].firstChild;
    setText(badge, health);
    setClass(badge, healthClass[health]);
    setText(cells[5], ep.in_flight);
    const [loadText, meter] = cells[6].children;
    const known = ep.load_rate >= 0;
    setText(loadText, known ? ep.load_rate.toFixed(2) : "-");
    meter.hidden = !known;
    if (known) meter.value = Math.min(ep.load_rate, 1);
    setTitle(cells[6], known
      ? `load rate ${ep.load_rate.toFixed(3)}, utilization ${(ep.utilization || 0).toFixed(3)}` +
        (ep.load_source ? `, from ${ep.load_source}` : "")
      : "no fresh load report");
    setText(cells[7], (ep.picks || 0).toLocaleString());
    setText(cells[8], millis(ep.latency_ewma_ms));
  }

  function renderServices(services) {
    const table = byId("services");
    sync(table, services, (svc) => svc.name, () => el("tbody"), (tbody, svc) => {
      setData(tbody, "service", svc.name);
      const eps = svc.endpoints || [];
      const items = eps.length ? eps.map((ep) => ({ svc, ep })) : [{ svc, ep: null }];
      sync(tbody, items, (item) => (item.ep ? `${item.ep.addr} ${item.ep.id}` : ""),
        createEndpointRow, updateEndpointRow);
    });
    table.hidden = services.length === 0;
    byId("no-services").hidden = services.length !== 0;

    const eps = services.flatMap((svc) => svc.endpoints || []);
    const healthy = eps.filter((ep) => endpointHealth(ep) === "healthy").length;
    setText(byId("services-summary"), `${plural(services.length, "service")} · ` +
      `${plural(eps.length, "endpoint")}, ${healthy} healthy`);
    return eps.length - healthy;
  }

  // ---- processes ----

  const stateClass = {
    running: "badge ok",
    starting: "badge info",
    stopping: "badge info",
    unhealthy: "badge warn",
    backoff: "badge warn",
    fatal: "badge bad",
    stopped: "badge neutral",
  };

  function processName(p) {
    return `${p.agent}-${p.instance}`;
  }

  function createProcess() {
    const tbody = el("tbody");
    const main = el("tr", "process");
    const state = el("td");
    state.append(el("span"));
    main.append(el("td", "agent"), el("td", "num"), state, el("td", "num pid"), el("td", "num port"),
      el("td", "health"), el("td", "num restarts"), el("td", "num uptime"), el("td", "exit"));
    const log = el("tr", "log");
    const cell = el("td");
    cell.colSpan = 9;
    const details = el("details");
    details.append(el("summary"), el("pre"));
    cell.append(details);
    log.append(cell);
    tbody.append(main, log);
    return tbody;
  }

  function updateProcess(tbody, p, now) {
    const name = processName(p);
    const [main, log] = tbody.rows;
    const cells = main.cells;
    setData(tbody, "process", name);
    setData(main, "process", name);
    setData(main, "state", p.state);
    setText(cells[0], p.agent);
    setText(cells[1], p.instance);
    const badge = cells[2].firstChild;
    setText(badge, p.state);
    setClass(badge, stateClass[p.state] || "badge neutral");
    setTitle(cells[2], p.registered ? "registered in etcd" : "not registered");
    setText(cells[3], p.pid > 0 ? p.pid : "-");
    setText(cells[4], p.port || "-");
    setText(cells[5], p.health || "-");
    setClass(cells[5], "health " + (!p.health ? "" : p.health === "SERVING" ? "good" : "poor"));
    setText(cells[6], p.restarts);
    const started = time(p.started_at);
    setText(cells[7], p.pid > 0 && started ? duration(now - started) : "-");
    const exitAt = time(p.last_exit_at);
    setText(cells[8], p.last_exit ? p.last_exit + (exitAt ? `, ${duration(now - exitAt)} ago` : "") : "-");
    setTitle(cells[8], exitAt ? new Date(exitAt).toLocaleString() : "");

    const lines = p.last_lines || [];
    setData(log, "logFor", name);
    log.hidden = lines.length === 0;
    const [summary, pre] = log.querySelector("details").children;
    setText(summary, `last ${plural(lines.length, "line")} of output`);
    setText(pre, lines.join("\n"));
  }

  function renderProcesses(processes, now) {
    const table = byId("processes");
    sync(table, processes, processName, createProcess, (tbody, p) => updateProcess(tbody, p, now));
    table.hidden = processes.length === 0;
    byId("no-processes").hidden = processes.length !== 0;
    const running = processes.filter((p) => p.state === "running").length;
    setText(byId("processes-summary"), processes.length
      ? `${plural(processes.length, "instance")} · ${running} running` : "");
    return processes.filter((p) => p.state !== "running" && p.state !== "stopped").length;
  }

  // ---- the loop ----

  function render(snap, now) {
    renderHeader(snap, now);
    let problems = renderServices(snap.services || []);
    problems += renderProcesses(snap.processes || [], now);
    if (snap.etcd && !snap.etcd.ready) problems++;
    document.title = problems ? `quaestor (${plural(problems, "problem")})` : "quaestor";
  }

  let lastGood = null;

  function showReachable() {
    lastGood = new Date();
    document.body.dataset.state = "ok";
    byId("unreachable").hidden = true;
    setText(byId("updated"), `updated ${lastGood.toLocaleTimeString()}`);
  }

  function showUnreachable(err) {
    document.body.dataset.state = "unreachable";
    byId("unreachable").hidden = false;
    setText(byId("unreachable-detail"), `(${err.message || err})` +
      (lastGood ? `: showing the state of ${lastGood.toLocaleTimeString()}.` : "."));
    document.title = "quaestor (unreachable)";
  }

  async function fetchStatus() {
    const resp = await fetch("api/status", { cache: "no-store", signal: AbortSignal.timeout(fetchTimeout) });
    if (!resp.ok) throw new Error(`api/status answered ${resp.status} ${resp.statusText}`);
    const snap = await resp.json();
    // Ages are measured on our clock, unless the server's (its Date header,
    // to the second) is clearly another.
    let now = Date.now();
    const serverNow = Date.parse(resp.headers.get("Date"));
    if (Math.abs(serverNow - now) > 2000) now = serverNow;
    return { snap, now };
  }

  async function refresh() {
    try {
      let got;
      try {
        got = await fetchStatus();
      } catch (err) {
        showUnreachable(err);
        return;
      }
      render(got.snap, got.now);
      showReachable();
    } finally {
      setTimeout(refresh, refreshEvery);
    }
  }

  refresh();
})();
