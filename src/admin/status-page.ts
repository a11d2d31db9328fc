/**
 * The status page served at `GET /` on the admin listener (docs/observability.md, "Status page"):
 * one self-contained document, hand-written HTML, CSS and JavaScript, no external asset, live over
 * `GET /events`. Kept as a string so the package ships it with the code. Text goes into the page
 * through `textContent` only. The script uses no template literals (this file is one).
 */
export const STATUS_PAGE = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>circuit-proxy</title>
<style>
  :root {
    --bg: #f4f5f7; --card: #fff; --ink: #1d2330; --muted: #5d6675; --line: #e2e5ea;
    --closed: #1f8a4c; --closed-bg: #e5f4ea; --open: #c62828; --open-bg: #fde8e8;
    --half: #b86e00; --half-bg: #fff1d6; --accent: #2f5bd3;
  }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--ink); }
  header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px 20px; padding: 14px 20px; background: var(--ink); color: #fff; }
  header h1 { font-size: 17px; margin: 0; font-weight: 650; letter-spacing: .2px; }
  .summary { display: flex; gap: 8px; flex-wrap: wrap; }
  .count { padding: 3px 10px; border-radius: 999px; font-weight: 600; font-size: 13px; background: #ffffff1f; }
  .count.open { background: var(--open); } .count.half_open { background: var(--half); } .count.closed { background: #ffffff26; }
  .conn { margin-left: auto; font-size: 12px; color: #c9cfda; } .conn.down { color: #ffb4b4; }
  main { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); align-items: start; gap: 14px; padding: 16px 20px 28px; }
  .card { background: var(--card); border: 1px solid var(--line); border-left: 6px solid var(--closed); border-radius: 10px; padding: 14px 16px; display: flex; flex-direction: column; gap: 10px; min-width: 0; }
  .card.open { border-left-color: var(--open); box-shadow: 0 0 0 1px #c6282833, 0 6px 18px -8px #c6282866; }
  .card.half_open { border-left-color: var(--half); }
  .top { display: flex; align-items: center; gap: 10px; }
  .name { font-size: 17px; font-weight: 700; margin: 0; overflow-wrap: anywhere; }
  .state { margin-left: auto; padding: 3px 10px; border-radius: 6px; font-weight: 700; font-size: 12px; letter-spacing: .6px; white-space: nowrap; background: var(--closed-bg); color: var(--closed); }
  .via { font-size: 12px; color: var(--muted, #888); margin: 2px 0 4px; }
  .card.open .state { background: var(--open-bg); color: var(--open); }
  .card.half_open .state { background: var(--half-bg); color: var(--half); }
  .url { color: var(--muted); font-size: 12px; overflow-wrap: anywhere; margin-top: -6px; }
  .facts { display: grid; grid-template-columns: repeat(auto-fit, minmax(92px, 1fr)); gap: 8px; }
  .fact { background: var(--bg); border-radius: 8px; padding: 6px 8px; }
  .fact b { display: block; font-size: 16px; font-variant-numeric: tabular-nums; }
  .fact span { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .4px; }
  .spark { width: 100%; height: 46px; display: block; }
  .spark-legend { display: flex; justify-content: space-between; color: var(--muted); font-size: 11px; margin-top: -6px; }
  .probe { font-weight: 600; color: var(--open); } .card.half_open .probe { color: var(--half); }
  .trip { font-size: 13px; } .trip em { color: var(--muted); font-style: normal; }
  details summary { cursor: pointer; color: var(--muted); font-size: 12px; }
  ol.history { margin: 6px 0 0; padding-left: 18px; font-size: 12px; color: var(--muted); }
  ol.history li { margin: 2px 0; overflow-wrap: anywhere; } ol.history b { color: var(--ink); font-weight: 600; }
  .actions { display: flex; gap: 8px; }
  button { font: inherit; font-size: 13px; font-weight: 600; padding: 6px 12px; border-radius: 7px; border: 1px solid var(--line); background: #fff; color: var(--ink); cursor: pointer; }
  button:hover { border-color: var(--accent); } button.danger { color: var(--open); } button:disabled { opacity: .5; cursor: default; }
  ul.endpoints, ul.routes { list-style: none; margin: 0; padding: 0; font-size: 12px; display: flex; flex-direction: column; gap: 3px; }
  ul.endpoints li, ul.routes li { display: flex; gap: 8px; align-items: baseline; padding: 3px 8px; border-radius: 6px; background: var(--bg); overflow-wrap: anywhere; }
  ul.endpoints li b, ul.routes li b { font-weight: 600; font-variant-numeric: tabular-nums; }
  ul.endpoints li span { margin-left: auto; color: var(--muted); white-space: nowrap; }
  ul.endpoints li.ejected { background: var(--open-bg); color: var(--open); } ul.endpoints li.ejected span { color: var(--open); }
  ul.endpoints li.draining { opacity: .6; }
  .note { font-size: 12px; color: var(--muted); min-height: 1em; }
  .empty { padding: 40px 20px; color: var(--muted); }
  @media (max-width: 480px) { header { padding: 12px 14px; } main { padding: 12px; grid-template-columns: 1fr; } .conn { margin-left: 0; width: 100%; } }
</style>
</head>
<body>
<header>
  <h1>circuit-proxy</h1>
  <div class="summary" id="summary"></div>
  <div class="conn" id="conn">connecting…</div>
</header>
<main id="cards"><div class="empty">Waiting for the event stream…</div></main>
<script>
(function () {
  "use strict";
  var services = {};
  var order = { open: 0, half_open: 1, closed: 2 };
  var LABEL = { open: "OPEN", half_open: "HALF-OPEN", closed: "CLOSED" };
  var SERIES = 300;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmtMs(ms) {
    if (ms >= 60000 && ms % 60000 === 0) return ms / 60000 + "m";
    if (ms >= 1000) return Math.round(ms / 100) / 10 + "s";
    return ms + "ms";
  }
  function pct(r) { return Math.round(r * 1000) / 10 + "%"; }
  function ago(iso) {
    var s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.round(s / 60) + "m ago";
    return Math.round(s / 3600) + "h ago";
  }
  function fact(label, value) { var f = el("div", "fact"); f.appendChild(el("b", "", value)); f.appendChild(el("span", "", label)); return f; }

  function sparkline(req, err) {
    var ns = "http://www.w3.org/2000/svg", w = 300, h = 46;
    var svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark");
    svg.setAttribute("role", "img");
    var max = 1, i;
    for (i = 0; i < req.length; i++) if (req[i] > max) max = req[i];
    var off = SERIES - req.length, pts = [], errPath = "M" + off + " " + h;
    for (i = 0; i < req.length; i++) {
      var x = off + i, y = h - 2 - (req[i] / max) * (h - 6);
      pts.push(x + "," + y.toFixed(1));
      var rate = req[i] ? err[i] / req[i] : 0;
      errPath += " L" + x + " " + (h - rate * (h - 2)).toFixed(1);
    }
    errPath += " L" + (off + req.length - 1) + " " + h + " Z";
    var area = document.createElementNS(ns, "path");
    area.setAttribute("d", req.length ? errPath : "");
    area.setAttribute("fill", "#c6282840");
    var line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", pts.join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2f5bd3");
    line.setAttribute("stroke-width", "1.5");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.appendChild(area); svg.appendChild(line);
    var title = document.createElementNS(ns, "title");
    title.textContent = "requests per second (line) and error % (red area), last 5 minutes";
    svg.appendChild(title);
    return svg;
  }

  function act(name, action, note) {
    var token = sessionStorage.getItem("circuit-proxy-token");
    function send() {
      var headers = { "content-type": "application/json" };
      if (token) headers.authorization = "Bearer " + token;
      return fetch("/breakers/" + encodeURIComponent(name) + "/" + action, {
        method: "POST", headers: headers, body: JSON.stringify({ reason: "status page" })
      });
    }
    note.textContent = "…";
    send().then(function (r) {
      if (r.status === 401 || r.status === 403) {
        token = window.prompt("Admin token for " + action + " (" + name + ")") || "";
        if (!token) { note.textContent = "not allowed without the admin token"; return null; }
        sessionStorage.setItem("circuit-proxy-token", token);
        return send();
      }
      return r;
    }).then(function (r) {
      if (r === null) return;
      note.textContent = r.ok ? "" : "refused: HTTP " + r.status;
    }).catch(function (e) { note.textContent = "failed: " + e.message; });
  }

  function card(s) {
    var c = el("section", "card " + s.state);
    c.setAttribute("data-service", s.name);
    c.setAttribute("data-state", s.state);
    var top = el("div", "top");
    top.appendChild(el("h2", "name", s.name));
    var label = LABEL[s.state] + (s.forced ? " · FORCED" : "") + (s.mode === "observe" ? " · OBSERVE" : "");
    top.appendChild(el("span", "state", label));
    c.appendChild(top);
    if (s.stateFrom) {
      // The state came from another sidecar of the fleet (docs/fleet.md).
      var via = el("div", "via", "via fleet sidecar " + s.stateFrom);
      via.setAttribute("data-fleet-from", s.stateFrom);
      c.appendChild(via);
    }
    c.appendChild(el("div", "url", s.url));
    var facts = el("div", "facts");
    facts.appendChild(fact("failures", s.consecutiveFailures + " / " + s.threshold));
    facts.appendChild(fact("req/s", String(s.rps)));
    facts.appendChild(fact("errors", s.rps ? pct(s.errorsPerSecond / s.rps) : "0%"));
    facts.appendChild(fact("in flight", s.maxConcurrent ? s.inFlightNow + " / " + s.maxConcurrent : String(s.inFlightNow)));
    if (s.window) {
      if (s.window.failureRate !== null) facts.appendChild(fact("failure rate", pct(s.window.failureRate)));
      if (s.window.slowCallRate !== null) facts.appendChild(fact("slow calls", pct(s.window.slowCallRate)));
      facts.appendChild(fact("window", s.window.requests + " calls"));
    }
    if (s.queued) facts.appendChild(fact("queued", String(s.queued)));
    if (s.tunnels) facts.appendChild(fact("tunnels", String(s.tunnels)));
    if (s.retries) facts.appendChild(fact("retries", s.retries.total + (s.retries.exhausted ? " · " + s.retries.exhausted + " over budget" : "")));
    c.appendChild(facts);
    var series = s.series || { requests: [], errors: [] };
    c.appendChild(sparkline(series.requests, series.errors));
    var legend = el("div", "spark-legend");
    legend.appendChild(el("span", "", "5 min ago")); legend.appendChild(el("span", "", "req/s and error % · now"));
    c.appendChild(legend);
    if (s.routes && s.routes.length) {
      var rl = el("ul", "routes");
      s.routes.forEach(function (r) {
        var li = el("li");
        li.setAttribute("data-route", r.route);
        li.appendChild(el("b", "", r.route === "-" ? "(no route)" : r.route));
        li.appendChild(el("span", "", r.rps + " req/s · " + (r.rps ? pct(r.errorsPerSecond / r.rps) : "0%") + " errors · " + r.requests + " in all"));
        rl.appendChild(li);
      });
      c.appendChild(rl);
    }
    if (s.endpoints && s.endpoints.length) {
      var ul = el("ul", "endpoints");
      s.endpoints.forEach(function (ep) {
        var li = el("li", ep.state);
        li.setAttribute("data-endpoint", ep.address);
        li.setAttribute("data-endpoint-state", ep.state);
        li.appendChild(el("b", "", ep.address));
        var why = el("span");
        if (ep.state === "ejected") {
          why.setAttribute("data-ejected-until", String(Date.parse(ep.ejectedUntil)));
          why.setAttribute("data-ejection", String(ep.ejection));
          li.title = ep.reason || "";
        } else {
          why.textContent = ep.state + " · " + ep.requests + " req, " + ep.failures + " failed (1 min) · " + ep.inFlight + " in flight";
        }
        li.appendChild(why);
        ul.appendChild(li);
      });
      c.appendChild(ul);
    }
    if (s.state === "open") {
      var p = el("div", "probe");
      p.setAttribute("data-probe", String(s.forced ? 0 : s.nextProbeAt));
      p.textContent = s.forced ? "forced open: no probing until closed" : "";
      c.appendChild(p);
    } else if (s.state === "half_open") {
      var trial = el("div", "probe", s.trialBy === undefined ? "trial requests in flight decide" : s.trialBy === "?" ? "asking the fleet whose trial it is" : "the fleet's trial is sent by " + s.trialBy);
      if (s.trialBy) trial.setAttribute("data-trial-by", s.trialBy);
      c.appendChild(trial);
    }
    if (s.lastTrip) {
      var t = el("div", "trip");
      t.appendChild(el("em", "", "Last trip " + ago(s.lastTrip.at) + ": "));
      t.appendChild(document.createTextNode(s.lastTrip.reason));
      c.appendChild(t);
    }
    var hist = s.history || [];
    if (hist.length) {
      var d = el("details");
      if (s.state !== "closed") d.open = true;
      d.appendChild(el("summary", "", "Last transitions (" + hist.length + ")"));
      var ol = el("ol", "history");
      for (var i = 0; i < Math.min(hist.length, 5); i++) {
        var h = hist[i], li = el("li");
        li.appendChild(el("b", "", h.from + " → " + h.to));
        li.appendChild(document.createTextNode(" " + ago(h.at) + ": " + h.reason));
        if (h.fleet) li.setAttribute("data-fleet", h.fleet);
        ol.appendChild(li);
      }
      d.appendChild(ol);
      c.appendChild(d);
    }
    var actions = el("div", "actions"), note = el("div", "note");
    var open = el("button", "danger", "Force open"), close = el("button", "", "Close");
    open.setAttribute("data-action", "open"); close.setAttribute("data-action", "close");
    open.disabled = s.state === "open" && s.forced;
    close.disabled = s.state === "closed";
    open.onclick = function () { act(s.name, "open", note); };
    close.onclick = function () { act(s.name, "close", note); };
    actions.appendChild(open); actions.appendChild(close);
    c.appendChild(actions); c.appendChild(note);
    return c;
  }

  function render() {
    var list = Object.keys(services).map(function (k) { return services[k]; });
    list.sort(function (a, b) { return order[a.state] - order[b.state] || (a.name < b.name ? -1 : 1); });
    var main = document.getElementById("cards");
    var notes = {};
    Array.prototype.forEach.call(main.querySelectorAll(".card"), function (c) {
      notes[c.getAttribute("data-service")] = c.querySelector(".note").textContent;
    });
    main.textContent = "";
    if (!list.length) main.appendChild(el("div", "empty", "No services configured."));
    list.forEach(function (s) { var c = card(s); c.querySelector(".note").textContent = notes[s.name] || ""; main.appendChild(c); });
    var counts = { open: 0, half_open: 0, closed: 0 };
    list.forEach(function (s) { counts[s.state]++; });
    var sum = document.getElementById("summary");
    sum.textContent = "";
    ["open", "half_open", "closed"].forEach(function (k) {
      if (counts[k] || k === "closed") sum.appendChild(el("span", "count " + k, counts[k] + " " + LABEL[k].toLowerCase()));
    });
    document.title = (counts.open ? counts.open + " open · " : "") + "circuit-proxy";
    tickProbes();
  }

  function tickProbes() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-probe]"), function (p) {
      var at = Number(p.getAttribute("data-probe"));
      if (!at) return;
      var s = Math.max(0, Math.ceil((at - Date.now()) / 1000));
      p.textContent = "next probe in " + s + "s";
    });
    Array.prototype.forEach.call(document.querySelectorAll("[data-ejected-until]"), function (w) {
      var left = Math.max(0, Math.ceil((Number(w.getAttribute("data-ejected-until")) - Date.now()) / 1000));
      w.textContent = "ejected (" + w.getAttribute("data-ejection") + ") · back in " + left + "s · " + (w.parentNode.title || "");
    });
  }
  setInterval(tickProbes, 250);

  function update(stats, keepSeries) {
    var old = services[stats.name] || {};
    stats.series = old.series || stats.series || { requests: [], errors: [] };
    stats.history = stats.history || old.history || [];
    if (keepSeries === false) {
      stats.series.requests.push(stats.rps); stats.series.errors.push(stats.errorsPerSecond);
      if (stats.series.requests.length > SERIES) { stats.series.requests.shift(); stats.series.errors.shift(); }
    }
    services[stats.name] = stats;
  }

  var conn = document.getElementById("conn");
  var es = new EventSource("/events");
  es.onopen = function () { conn.textContent = "live"; conn.className = "conn"; };
  es.onerror = function () { conn.textContent = "reconnecting…"; conn.className = "conn down"; };
  es.addEventListener("snapshot", function (e) {
    var d = JSON.parse(e.data);
    services = {};
    d.services.forEach(function (s) { if (s) { services[s.name] = s; } });
    render();
  });
  es.addEventListener("stats", function (e) {
    JSON.parse(e.data).services.forEach(function (s) { if (s) update(s, false); });
    render();
  });
  es.addEventListener("endpoint", function (e) {
    var ev = JSON.parse(e.data);
    if (ev.stats) { update(ev.stats, true); render(); }
  });
  es.addEventListener("transition", function (e) {
    var t = JSON.parse(e.data);
    if (!t.stats) return;
    var old = services[t.service] || {};
    var hist = (old.history || []).slice();
    hist.unshift({ at: t.at, from: t.from, to: t.to, reason: t.reason, forced: t.forced, fleet: t.fleet });
    t.stats.history = hist.slice(0, 10);
    update(t.stats, true);
    render();
  });
})();
</script>
</body>
</html>
`;
