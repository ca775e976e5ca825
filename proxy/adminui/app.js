// The meshgate admin page: reads /admin/routes and /admin/instances every
// second and redraws the tables. Plain DOM, no framework, no build step.
// Every value from the API is set as text, never parsed as HTML.
"use strict";

(function () {
  const REFRESH_MS = 1000;
  const TIMEOUT_MS = 2500;

  // The labels of the data-state values of an instance row.
  const LABELS = {
    "healthy": "healthy",
    "unhealthy": "unhealthy",
    "ejected": "ejected",
    "breaker-open": "breaker open",
    "breaker-half-open": "breaker half-open",
  };

  let lastOK = null; // Date of the last successful refresh

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function badge(state, text) {
    return el("span", { class: "badge " + state }, text || LABELS[state] || state);
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function clock(d) {
    return d.toLocaleTimeString([], { hour12: false });
  }

  async function getJSON(path) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
    try {
      const res = await fetch(path, { cache: "no-store", signal: ctl.signal, headers: { Accept: "application/json" } });
      if (!res.ok) {
        let msg = res.status + " " + res.statusText;
        try { const body = await res.json(); if (body && body.error) msg += ": " + body.error; } catch (_) { /* not JSON */ }
        throw new Error(path + ": " + msg);
      }
      return await res.json();
    } catch (err) {
      if (err.name === "AbortError") throw new Error(path + ": no answer within " + TIMEOUT_MS / 1000 + "s");
      if (err instanceof TypeError) throw new Error(path + ": " + err.message);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  // state is the one data-state of an instance: what matters most for
  // whether it gets traffic comes first. excluded instances (critical in
  // discovery) get none at all.
  function state(inst, excluded) {
    if (excluded || inst.health === "critical") return "unhealthy";
    if (inst.ejection && inst.ejection.ejected) return "ejected";
    const b = inst.circuit_breaker && inst.circuit_breaker.state;
    if (b === "open") return "breaker-open";
    if (b === "half-open") return "breaker-half-open";
    if (inst.health && inst.health !== "passing") return "unhealthy";
    return "healthy";
  }

  // conditions lists every badge of an instance, the primary state first.
  function conditions(inst, primary) {
    const out = [badge(primary, primary === "unhealthy" ? "unhealthy (" + (inst.health || "?") + ")" : undefined)];
    const add = (s, text) => { if (s !== primary) out.push(badge(s, text)); };
    if (inst.ejection && inst.ejection.ejected) add("ejected");
    const b = inst.circuit_breaker && inst.circuit_breaker.state;
    if (b === "open") add("breaker-open");
    if (b === "half-open") add("breaker-half-open");
    if (inst.health === "warning" && primary !== "unhealthy") out.push(badge("warning", "health warning"));
    return out;
  }

  function matchText(r) {
    const parts = [];
    if (r.host) parts.push("host " + r.host);
    if (r.path) parts.push("path " + r.path);
    if (r.path_prefix) parts.push("prefix " + r.path_prefix);
    if (r.methods && r.methods.length) parts.push(r.methods.join(","));
    for (const [k, v] of Object.entries(r.headers || {})) parts.push(k + ": " + v);
    if (r.strip_prefix) parts.push("(strip prefix)");
    if (r.rewrite_prefix) parts.push("→ " + r.rewrite_prefix);
    return parts.join("  ") || "any";
  }

  function renderRoutes(routes) {
    const body = document.querySelector("#routes tbody");
    const rows = routes.map((r) => el("tr", { "data-route": r.name },
      el("td", { class: "num" }, r.precedence),
      el("td", {}, r.name),
      el("td", {}, el("code", {}, matchText(r))),
      // An aggregate route has parts instead of a service.
      el("td", {}, r.service || (r.parts && r.parts.length ? "aggregate of " + r.parts.join(", ") : "")),
      el("td", { class: "num" }, r.instances)));
    if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "no routes")));
    body.replaceChildren(...rows);
  }

  function breakerCell(b) {
    if (!b) return el("td", { class: "detail" }, "off");
    const detail = b.consecutive_failures + " consecutive, " + b.window_failures + "/" + b.window_requests + " failed in window" +
      (b.open_for_seconds ? ", open for " + b.open_for_seconds.toFixed(1) + "s more" : "");
    return el("td", {}, b.state, el("div", { class: "detail" }, detail));
  }

  function ejectionCell(e, now) {
    if (!e) return el("td", { class: "detail" }, "off");
    if (e.ejected && e.until) {
      const until = new Date(e.until);
      const left = Math.max(0, Math.round((until - now) / 1000));
      return el("td", {}, el("time", { datetime: e.until }, "until " + clock(until)),
        el("div", { class: "detail" }, "in " + left + "s · " + e.ejections_total + " ejections"));
    }
    return el("td", {}, e.ejected ? "ejected" : "no",
      el("div", { class: "detail" }, e.consecutive_failures + " consecutive · " + e.ejections_total + " ejections"));
  }

  function instanceRow(svc, inst, excluded, now) {
    const st = state(inst, excluded);
    return el("tr", { class: "instance state-" + st, "data-instance": inst.id, "data-service": svc.name, "data-state": st },
      el("td", {}, el("code", {}, inst.id)),
      el("td", {}, el("code", {}, inst.address + ":" + inst.port)),
      el("td", {}, ...conditions(inst, st)),
      el("td", { class: "num" }, inst.weight),
      el("td", {}, inst.health || "passing"),
      el("td", {}, inst.source || ""),
      el("td", { class: "num" }, inst.in_flight),
      el("td", { class: "num" }, inst.requests_total),
      el("td", { class: "num" }, inst.failures_total),
      breakerCell(inst.circuit_breaker),
      ejectionCell(inst.ejection, now));
  }

  function renderServices(services) {
    const now = new Date();
    let total = 0, attention = 0;
    const blocks = services.map((svc) => {
      const rows = [];
      for (const inst of svc.instances || []) rows.push(instanceRow(svc, inst, false, now));
      for (const inst of svc.excluded || []) rows.push(instanceRow(svc, inst, true, now));
      total += rows.length;
      attention += rows.filter((r) => r.dataset.state !== "healthy").length;
      if (rows.length === 0) rows.push(el("tr", {}, el("td", { colspan: 11, class: "empty" }, "no instances")));
      return el("div", { class: "service", "data-service": svc.name },
        el("h3", {}, svc.name, " ", el("small", {}, (svc.load_balancer || "") + " · " + (svc.protocol || ""))),
        el("table", {},
          el("thead", {}, el("tr", {}, ...["id", "address", "state", "weight", "health", "source", "in flight",
            "requests", "failures", "circuit breaker", "ejection"].map((h) => el("th", {}, h)))),
          el("tbody", {}, ...rows)));
    });
    if (blocks.length === 0) blocks.push(el("p", { class: "empty" }, "no services"));
    document.getElementById("services").replaceChildren(...blocks);
    document.getElementById("summary").textContent = plural(services.length, "service") + ", " +
      plural(total, "instance") + ", " + attention + " " + (attention === 1 ? "needs" : "need") + " attention";
    document.title = (attention ? "(" + attention + ") " : "") + "meshgate admin";
  }

  function renderSnapshot(snap) {
    const s = document.getElementById("snapshot");
    if (!snap || !snap.available) { s.textContent = "no discovery snapshot yet"; return; }
    s.textContent = "snapshot " + snap.source + " v" + snap.version + ", " + Math.round(snap.age_seconds) + "s old";
  }

  function showError(err) {
    const banner = document.getElementById("error-banner");
    banner.textContent = "Admin API unreachable: " + err.message + ". Retrying every second" +
      (lastOK ? "; the tables show data from " + clock(lastOK) + "." : ".");
    banner.hidden = false;
    document.body.classList.add("stale");
  }

  function clearError() {
    document.getElementById("error-banner").hidden = true;
    document.body.classList.remove("stale");
  }

  async function refresh() {
    try {
      const [routes, instances] = await Promise.all([getJSON("/admin/routes"), getJSON("/admin/instances")]);
      renderRoutes(routes.routes || []);
      renderServices(instances.services || []);
      renderSnapshot(instances.snapshot);
      lastOK = new Date();
      const t = document.getElementById("last-refresh");
      t.textContent = clock(lastOK);
      t.setAttribute("datetime", lastOK.toISOString());
      clearError();
    } catch (err) {
      showError(err);
    } finally {
      // One refresh at a time: the next starts a second after this one ends.
      setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
