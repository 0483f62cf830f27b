// gslb status page: reads the REST API (with the token the operator gives it) and
// refreshes itself. No external assets, no framework.
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const EVERY = Math.max(1, Number(params.get("refresh")) || 5); // seconds
  const WINDOW_MS = 60000; // answer shares over the last minute
  const TOKEN_KEY = "gslb.token";
  const $ = (id) => document.getElementById(id);

  // Answer counts sampled per target: "ns\u0000target" -> [[timeMs, answers], ...]
  const samples = new Map();
  let timer = null;
  let refreshes = 0;
  let lastData = null;

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path) {
    const headers = { Accept: "application/json" };
    const t = token();
    if (t) headers.Authorization = "Bearer " + t;
    const r = await fetch(path, { headers, cache: "no-store" });
    let body = null;
    try { body = await r.json(); } catch (_) { /* not JSON */ }
    if (!r.ok) {
      const msg = body && body.error ? body.error : r.status + " " + r.statusText;
      throw new HttpError(r.status, msg);
    }
    return body;
  }

  async function listAll() {
    const items = [];
    let cont = null;
    for (;;) {
      let path = "/api/v1/nameservices?limit=500";
      if (cont) path += "&continue=" + encodeURIComponent(cont);
      const page = await api(path);
      items.push(...page.items);
      if (!page.continue || page.items.length === 0) return items;
      cont = page.continue;
    }
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function badge(health, title) {
    const h = health || "unknown";
    return el("span", { class: "badge h-" + h, title: title || null, "data-health": h }, h);
  }

  function ago(iso) {
    if (!iso) return "";
    const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
    if (!isFinite(s)) return iso;
    if (s < 60) return Math.max(0, s) + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return new Date(iso).toLocaleString();
  }

  // Records this refresh's answer counts and returns each target's share of the
  // service's answers over the last minute (null when nothing was answered or
  // the server does not count answers).
  function shares(svc, now, record) {
    const out = new Map();
    const targets = (svc.status && svc.status.targets) || [];
    let total = 0;
    const deltas = [];
    for (const t of targets) {
      if (typeof t.answers !== "number") { deltas.push(null); continue; }
      const key = svc.name + "\u0000" + t.name;
      let list = samples.get(key);
      if (!list) { list = []; samples.set(key, list); }
      // A counter that went down means a restart: start over.
      if (record) {
        if (list.length && list[list.length - 1][1] > t.answers) list.length = 0;
        list.push([now, t.answers]);
        while (list.length > 1 && now - list[1][0] >= WINDOW_MS) list.shift();
      }
      const d = list.length > 1 ? list[list.length - 1][1] - list[0][1] : 0;
      deltas.push(d);
      total += d;
    }
    targets.forEach((t, i) => {
      const d = deltas[i];
      out.set(t.name, d === null ? null : { count: d, share: total > 0 ? d / total : null });
    });
    return out;
  }

  function overrideOf(spec, st) {
    const o = (st && st.override) || null;
    if (!o) return null;
    let until = o.expiresAt || null;
    if (!until && typeof o.expiresAtMs === "number") until = new Date(o.expiresAtMs).toISOString();
    return { state: o.state, reason: o.reason, until, by: o.by };
  }

  // An fqdn target answers what its name resolved to: each address with its own
  // health (status.targets[].addresses). An address target has one, shown above.
  function addressList(t, ts) {
    const list = ts.addresses || [];
    if (t.address && list.length <= 1) return null;
    const box = el("ul", { class: "addrs", "data-addresses": String(list.length) });
    if (!list.length) {
      box.append(el("li", { class: "addr" }, t.fqdn ? "not resolved yet" : "no address"));
    }
    for (const a of list) {
      box.append(el("li", { "data-address": a.address },
        el("span", { class: "addr" }, a.address), " ",
        el("span", { class: "badge h-" + (a.health || "unknown"), "data-address-health": a.health || "unknown" },
          a.health || "unknown")));
    }
    return box;
  }

  function renderService(svc, now, record) {
    const st = svc.status || {};
    const ready = (st.conditions || []).find((c) => c.type === "Ready") || {};
    const share = shares(svc, now, record);
    const statusByName = new Map((st.targets || []).map((t) => [t.name, t]));
    const card = el("article", { class: "service", "data-service": svc.name },
      el("div", { class: "head" },
        el("span", { class: "name" }, svc.name),
        el("span", { class: "meta" }, svc.policy + " \u00b7 TTL " + svc.ttl + " s"),
        el("span", { class: "badge ready " + (ready.reason === "SomeTargetsUnhealthy" ? "h-Pending" : "r-" + (ready.status || "unknown")),
                     title: ready.message || null, "data-ready": ready.status || "" },
           ready.reason || "unknown")));
    const table = el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { text: "Target" }), el("th", { text: "Health" }),
        el("th", { text: "Answers (1 min)" }), el("th", { text: "Override" }))));
    const body = el("tbody");
    for (const t of svc.targets || []) {
      const ts = statusByName.get(t.name) || {};
      const where = t.address || t.fqdn || "";
      const health = el("td", { "data-label": "Health" },
        badge(ts.health, ts.lastProbeTime ? "last probe " + ago(ts.lastProbeTime) : null));
      if (t.enabled === false) health.append(" ", el("span", { class: "badge h-unknown" }, "disabled"));
      const obs = ts.observations || [];
      if (obs.length) {
        const box = el("div", { class: "obs", title: "each instance's own verdict" });
        for (const o of obs) {
          box.append(el("span", { class: "badge h-" + (o.health || "unknown"),
                                  "data-instance": o.instance,
                                  title: o.lastProbeTime ? "last probe " + ago(o.lastProbeTime) : null },
            o.instance + ": " + o.health));
        }
        health.append(box);
      }
      if (ts.damping) {
        const d = ts.damping;
        health.append(el("div", { class: "damping", "data-damping": d.reason || "", title: d.message || null },
          el("span", { class: "badge h-Pending" }, "damped"), " ", d.message || d.reason || "",
          d.until ? " (until " + new Date(d.until).toLocaleTimeString() + ")" : ""));
      }
      if (ts.lastError) health.append(el("div", { class: "lasterr" }, ts.lastError));
      if (ts.resolveError) {
        health.append(el("div", { class: "lasterr", "data-resolve-error": "" }, "resolving " + (t.fqdn || "") + ": " + ts.resolveError));
      }
      const sh = share.get(t.name);
      const shareCell = el("td", { class: "share", "data-label": "Answers (1 min)" });
      if (!sh) {
        shareCell.append(el("span", { class: "addr" }, "not counted"));
      } else if (sh.share === null) {
        shareCell.setAttribute("data-share", "");
        shareCell.append(el("span", { class: "addr" }, "no answers yet"));
      } else {
        const pct = (sh.share * 100).toFixed(sh.share < 0.1 && sh.share > 0 ? 1 : 0);
        shareCell.setAttribute("data-share", pct);
        shareCell.append(pct + " %", el("span", { class: "addr" }, " (" + sh.count + ")"),
          el("div", { class: "bar" }, el("span", { style: "width:" + (sh.share * 100).toFixed(1) + "%" })));
      }
      const ov = overrideOf(t, ts);
      const ovCell = el("td", { class: "override", "data-label": "Override" });
      if (ov) {
        ovCell.setAttribute("data-override", ov.state || "");
        ovCell.append(el("span", { class: "badge" }, ov.state || "override"), " ", ov.reason || "");
        const who = [ov.by ? "by " + ov.by : null, ov.until ? "until " + new Date(ov.until).toLocaleString() : null]
          .filter(Boolean).join(", ");
        if (who) ovCell.append(el("div", { class: "addr" }, who));
      } else {
        ovCell.append(el("span", { class: "addr" }, "\u2014"));
      }
      body.append(el("tr", { "data-target": t.name },
        el("td", { "data-label": "Target" }, el("div", {}, el("b", {}, t.name)),
           el("div", { class: "addr" }, where + (t.port ? ":" + t.port : "")),
           addressList(t, ts),
           t.locality ? el("div", { class: "loc" }, t.locality) : null,
           svc.policy === "Ratio" ? el("div", { class: "loc" }, "ratio " + t.ratio) : null),
        health, shareCell, ovCell));
    }
    table.append(body);
    card.append(table);
    return card;
  }

  function renderEvents(events) {
    const list = $("events");
    list.replaceChildren();
    if (!events.length) {
      list.append(el("li", { class: "empty" }, "Nothing happened yet."));
      return;
    }
    for (const e of events) {
      const what = [e.nameservice, e.target].filter(Boolean).join(" / ");
      list.append(el("li", { "data-kind": e.kind },
        el("div", { class: "when", title: e.time }, ago(e.time) + " \u00b7 " + e.instance),
        el("div", {}, el("span", { class: "kind" }, e.kind), what ? " " + what : ""),
        el("div", {}, e.message),
        e.token ? el("div", { class: "who" }, "by " + e.token) : null));
    }
  }

  function render(items, events, record) {
    const now = Date.now();
    const filter = $("filter").value.trim().toLowerCase();
    const services = $("services");
    services.replaceChildren();
    let targets = 0, bad = 0, notReady = 0;
    for (const svc of items) {
      const st = (svc.status && svc.status.targets) || [];
      targets += st.length;
      bad += st.filter((t) => t.health === "Unhealthy").length;
      const ready = ((svc.status && svc.status.conditions) || []).find((c) => c.type === "Ready");
      if (ready && ready.status !== "True") notReady++;
      // Sample every service (shares need continuity), show the filtered ones.
      const card = renderService(svc, now, record);
      if (!filter || svc.name.includes(filter)) services.append(card);
    }
    if (!items.length) services.append(el("p", { class: "empty" }, "No NameService is registered."));
    $("summary").replaceChildren(
      el("b", {}, items.length), " NameServices \u00b7 ", el("b", {}, targets), " targets \u00b7 ",
      el("b", { id: "unhealthy-count" }, bad), " unhealthy \u00b7 ", el("b", {}, notReady), " not ready");
    renderEvents(events);
    $("updated").textContent = "updated " + new Date(now).toLocaleTimeString();
    if (record) document.body.setAttribute("data-refreshes", String(++refreshes));
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const [items, events] = await Promise.all([listAll(), api("/api/v1/events?limit=30")]);
      lastData = [items, events.items];
      $("error").hidden = true;
      $("login").hidden = true;
      $("main").hidden = false;
      render(items, events.items, true);
    } catch (e) {
      if (e.status === 401) {
        showLogin(token() ? "That token was not accepted." : null);
        return; // no refresh until a token is given
      }
      $("error").textContent = "Cannot read the API: " + e.message + " (retrying)";
      $("error").hidden = false;
    }
    timer = setTimeout(refresh, EVERY * 1000);
  }

  function showLogin(message) {
    $("main").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("login-error").hidden = !message;
    $("token").focus();
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    refresh();
  });
  $("filter").addEventListener("input", () => {
    // Re-render without sampling the counters again.
    if (lastData) render(lastData[0], lastData[1], false);
  });
  $("every").textContent = String(EVERY);
  refresh();
})();
