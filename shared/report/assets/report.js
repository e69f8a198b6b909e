/* zts report: renders the JSON in #zts-data. Every value from the data goes into the page
 * through textContent, createTextNode, or attributes set on elements made here: no value is
 * ever parsed as HTML, and the only URLs are checked Azure portal links. No network access. */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var PORTAL = "https://portal.azure.com/";
  var SEVERITIES = ["critical", "high", "medium", "low", "informational"];
  var STATUS_TEXT = {
    used: "allowed by policy, used",
    unused: "allowed by policy, never used in the observed window",
    nodata: "allowed by policy (no flow data to measure use)",
    untracked: "allowed by policy to/from an Azure service tag (use not measurable here)",
    violation: "observed, not allowed by policy",
    ungoverned: "observed, not governed by the policy",
    observed: "observed"
  };
  var STATUS_ORDER = ["violation", "unused", "used", "nodata", "untracked", "ungoverned",
    "observed"];
  var DATA = JSON.parse(document.getElementById("zts-data").textContent);
  var NODES = {};
  DATA.nodes.forEach(function (n) { NODES[n.id] = n; });
  var EDGES = {};
  DATA.edges.forEach(function (e) { EDGES[e.id] = e; });

  // -- DOM helpers (text only) ----------------------------------------------------------------
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }
  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) { continue; }
      parent.appendChild(typeof c === "object" ? c : document.createTextNode(String(c)));
    }
    return parent;
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, String(attrs[k])); });
    return e;
  }
  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }
  function cut(text, n) {
    var s = String(text === undefined || text === null ? "" : text);
    return s.length > n ? s.slice(0, n - 1) + "\u2026" : s;
  }
  function num(n) {
    if (n === null || n === undefined) { return "\u2013"; }
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }
  function bytes(n) {
    if (!n) { return "0 B"; }
    var units = ["B", "KB", "MB", "GB", "TB"];
    var i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function when(iso) {
    if (typeof iso !== "string" || iso.length < 19) { return iso ? String(iso) : "\u2013"; }
    return iso.slice(0, 10) + " " + iso.slice(11, 19) + " UTC";
  }
  function portalLink(url, text) {
    if (typeof url === "string" && url.indexOf(PORTAL) === 0) {
      var a = el("a", null, text);
      a.href = url;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      return a;
    }
    return document.createTextNode(String(text));
  }
  function lastSegment(id) {
    var parts = String(id || "").split("/").filter(function (p) { return p; });
    return parts.length ? parts[parts.length - 1] : String(id || "");
  }
  function cell(tr, value, cls) {
    var td = el("td", cls || null);
    if (value !== null && typeof value === "object") { td.appendChild(value); }
    else { td.textContent = value === undefined || value === null ? "" : String(value); }
    tr.appendChild(td);
    return td;
  }
  function headRow(table, names) {
    var thead = el("thead");
    var tr = el("tr");
    names.forEach(function (n) {
      var th = el("th", /^(Flows|Bytes|Hop|Priority|Members|NSG)/.test(n) ? "num" : null, n);
      tr.appendChild(th);
    });
    thead.appendChild(tr);
    table.appendChild(thead);
    var body = el("tbody");
    table.appendChild(body);
    return body;
  }
  function wrapTable(table) { return add(el("div", "table-wrap"), table); }
  function nodeLabel(id) { return NODES[id] ? NODES[id].label : id; }
  function list(values) {
    var ul = el("ul");
    values.forEach(function (v) { ul.appendChild(el("li", null, v)); });
    return ul;
  }

  // -- header, tabs, notes --------------------------------------------------------------------
  function header() {
    var meta = DATA.meta;
    var s = DATA.summary;
    document.getElementById("title").textContent = meta.title;
    var sub = [];
    if (meta.window) { sub.push("Flows " + when(meta.window.start) + " \u2192 " +
      when(meta.window.end)); }
    if (meta.posture) { sub.push("Posture: inbound " + meta.posture.inbound + ", outbound " +
      meta.posture.outbound); }
    Object.keys(meta.sources || {}).sort().forEach(function (k) {
      sub.push(k + ": " + meta.sources[k]);
    });
    document.getElementById("subtitle").textContent = sub.join(" \u00b7 ");
    var cards = document.getElementById("cards");
    function card(n, label, alert) {
      var c = add(el("div", alert ? "card alert" : "card"), el("span", "n", n),
        el("span", "l", label));
      c.setAttribute("data-card", label);
      cards.appendChild(c);
    }
    card(num(s.groups), meta.hasPolicy ? "groups" : "VNets");
    card(num(s.members), "members");
    card(s.flows === null ? "\u2013" : num(s.flows), "flows observed");
    if (meta.hasPolicy) {
      card(num(s.violationFlows), "flows not allowed by policy", s.violationFlows > 0);
      card(num((s.edges || {}).unused || 0), "allows never used");
    }
    var total = 0;
    Object.keys(s.findings).forEach(function (k) { total += s.findings[k]; });
    card(num(total), "findings", (s.findings.critical || 0) + (s.findings.high || 0) > 0);
    if (s.plan) { card("+" + s.plan.add + " ~" + s.plan.change + " \u2212" + s.plan.remove,
      "plan changes"); }
    var notes = document.getElementById("notes");
    if (meta.notes.length) { add(notes, list(meta.notes)); } else { notes.hidden = true; }
  }
  function tabs() {
    var buttons = document.querySelectorAll("nav button[data-tab]");
    function show(name) {
      buttons.forEach(function (b) {
        var on = b.getAttribute("data-tab") === name;
        b.classList.toggle("active", on);
        document.getElementById("tab-" + b.getAttribute("data-tab")).hidden = !on;
      });
    }
    buttons.forEach(function (b) {
      b.addEventListener("click", function () { show(b.getAttribute("data-tab")); });
    });
    document.querySelector("nav button[data-tab=findings]").textContent =
      "Findings (" + DATA.findings.length + ")";
    document.querySelector("nav button[data-tab=blast]").textContent =
      "Blast radius (" + DATA.blast.length + ")";
    show("map");
  }

  // -- map ------------------------------------------------------------------------------------
  var mapSvg = null;
  var layout = {};
  function edgeWidth(e, max) {
    if (e.status === "nodata" || e.status === "untracked" || e.status === "unused") {
      return 2;
    }
    if (!max || !e.flows) { return 1.5; }
    return 1.5 + 6.5 * Math.log(1 + e.flows) / Math.log(1 + max);
  }
  function placeNodes(width, height) {
    var outside = DATA.nodes.filter(function (n) { return n.kind === "bucket"; });
    var tags = DATA.nodes.filter(function (n) { return n.kind === "service-tag"; });
    var groups = DATA.nodes.filter(function (n) {
      return n.kind !== "bucket" && n.kind !== "service-tag";
    });
    var ordered = outside.concat(tags, groups);
    var count = Math.max(ordered.length, 1);
    var rx = width / 2 - 160;
    var ry = height / 2 - 95;
    var radius = Math.min(rx, ry);
    var maxMembers = 1;
    groups.forEach(function (n) { maxMembers = Math.max(maxMembers, n.members || 0); });
    var rMax = Math.max(9, Math.min(34, Math.PI * radius / count * 0.7));
    ordered.forEach(function (n, i) {
      var angle = -Math.PI / 2 + 2 * Math.PI * (i - (outside.length - 1) / 2) / count;
      var r = n.kind === "bucket" || n.kind === "service-tag" ? Math.min(16, rMax) :
        Math.max(8, Math.min(rMax, 9 + (rMax - 9) * Math.sqrt((n.members || 0) / maxMembers)));
      layout[n.id] = {
        x: width / 2 + rx * Math.cos(angle), y: height / 2 + ry * Math.sin(angle),
        r: r, angle: angle
      };
    });
  }
  function edgePath(e) {
    var a = layout[e.from];
    var b = layout[e.to];
    var bend = { policy: 0.12, violation: 0.3, ungoverned: 0.21, observed: 0.16 }[e.kind] || 0.15;
    if (e.from === e.to) {
      var ux = Math.cos(a.angle);
      var uy = Math.sin(a.angle);
      var reach = a.r + (e.kind === "policy" ? 34 : 52);
      function rot(deg, dist) {
        var t = deg * Math.PI / 180;
        return [a.x + dist * (ux * Math.cos(t) - uy * Math.sin(t)),
          a.y + dist * (ux * Math.sin(t) + uy * Math.cos(t))];
      }
      var p0 = rot(-28, a.r);
      var c1 = rot(-42, reach);
      var c2 = rot(42, reach);
      var p1 = rot(28, a.r + 5);
      return "M" + p0.join(",") + " C" + c1.join(",") + " " + c2.join(",") + " " + p1.join(",");
    }
    var dx = b.x - a.x;
    var dy = b.y - a.y;
    var mx = (a.x + b.x) / 2 - dy * bend;
    var my = (a.y + b.y) / 2 + dx * bend;
    function toward(p, q, dist) {
      var vx = q[0] - p[0];
      var vy = q[1] - p[1];
      var len = Math.sqrt(vx * vx + vy * vy) || 1;
      return [p[0] + vx / len * dist, p[1] + vy / len * dist];
    }
    var start = toward([a.x, a.y], [mx, my], a.r + 1);
    var end = toward([b.x, b.y], [mx, my], b.r + 3);
    return "M" + start.join(",") + " Q" + mx + "," + my + " " + end.join(",");
  }
  function buildMap() {
    var width = 1000;
    var height = Math.max(760, 300 + DATA.nodes.length * 14);
    placeNodes(width, height);
    mapSvg = svg("svg", { viewBox: "0 0 " + width + " " + height, "class": "map",
      role: "img", "aria-label": "segmentation map" });
    var defs = svg("defs");
    STATUS_ORDER.forEach(function (status) {
      var m = svg("marker", { id: "arrow-" + status, viewBox: "0 0 10 10", refX: 8, refY: 5,
        markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse",
        orient: "auto-start-reverse" });
      m.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", "class": "marker-" + status }));
      defs.appendChild(m);
    });
    mapSvg.appendChild(defs);
    var edgeLayer = svg("g", { "class": "edges" });
    var max = 0;
    DATA.edges.forEach(function (e) { max = Math.max(max, e.flows || 0); });
    DATA.edges.forEach(function (e) {
      var d = edgePath(e);
      var g = svg("g", { "class": "edge-group", "data-edge": e.id, "data-status": e.status });
      var title = svg("title");
      title.textContent = nodeLabel(e.from) + " \u2192 " + nodeLabel(e.to) + ": " +
        STATUS_TEXT[e.status] + (e.flows ? " (" + num(e.flows) + " flows)" : "");
      var path = svg("path", { d: d, "class": "edge " + e.status,
        "stroke-width": edgeWidth(e, max).toFixed(2),
        "marker-end": "url(#arrow-" + e.status + ")" });
      var hit = svg("path", { d: d, "class": "edge-hit" });
      g.appendChild(title);
      g.appendChild(path);
      g.appendChild(hit);
      g.addEventListener("click", function (ev) { ev.stopPropagation(); showEdge(e.id); });
      edgeLayer.appendChild(g);
    });
    mapSvg.appendChild(edgeLayer);
    var nodeLayer = svg("g", { "class": "nodes" });
    var loops = {};
    DATA.edges.forEach(function (e) {
      if (e.from === e.to) { loops[e.from] = Math.max(loops[e.from] || 0, e.kind === "policy" ?
        26 : 40); }
    });
    DATA.nodes.forEach(function (n) {
      var p = layout[n.id];
      var extra = n.id === "x:internet" ? " internet" : "";
      var g = svg("g", { "class": "node " + n.kind + extra, "data-node": n.id,
        transform: "translate(" + p.x.toFixed(1) + "," + p.y.toFixed(1) + ")" });
      var title = svg("title");
      title.textContent = n.label;
      g.appendChild(title);
      g.appendChild(svg("circle", { r: p.r.toFixed(1), "class": "body" }));
      var findings = n.findings || {};
      var count = 0;
      Object.keys(findings).forEach(function (k) { count += findings[k]; });
      if (count) {
        var bx = p.r * 0.72;
        g.appendChild(svg("circle", { cx: bx, cy: -p.r * 0.72, r: 8, "class": "badge" }));
        var bt = svg("text", { x: bx, y: -p.r * 0.72 + 3.5, "text-anchor": "middle",
          "class": "badge-n" });
        bt.textContent = String(count);
        g.appendChild(bt);
      }
      var cos = Math.cos(p.angle);
      var sin = Math.sin(p.angle);
      var anchor = cos > 0.3 ? "start" : cos < -0.3 ? "end" : "middle";
      var gap = p.r + 7 + (loops[n.id] || 0);
      var lx = cos * gap;
      var ly = sin * gap + (sin > 0.3 ? 10 : sin < -0.3 ? -14 : 0);
      var label = svg("text", { x: lx.toFixed(1), y: ly.toFixed(1), "text-anchor": anchor });
      label.textContent = cut(n.label, 26);
      var small = svg("text", { x: lx.toFixed(1), y: (ly + 13).toFixed(1),
        "text-anchor": anchor, "class": "small" });
      small.textContent = n.kind === "bucket" ? num(n.addressCount) + " addresses" :
        n.kind === "service-tag" ? "service tag" : num(n.members) + " members";
      g.appendChild(label);
      g.appendChild(small);
      g.addEventListener("click", function (ev) { ev.stopPropagation(); showNode(n.id); });
      nodeLayer.appendChild(g);
    });
    mapSvg.appendChild(nodeLayer);
    mapSvg.addEventListener("click", function () { unfocus(); intro(); });
    document.getElementById("map").appendChild(mapSvg);
  }
  function unfocus() {
    mapSvg.classList.remove("focus");
    mapSvg.querySelectorAll(".hl, .selected").forEach(function (x) {
      x.classList.remove("hl");
      x.classList.remove("selected");
    });
  }
  function focus(nodeIds, edgeIds) {
    unfocus();
    mapSvg.classList.add("focus");
    mapSvg.querySelectorAll("g.node").forEach(function (g) {
      if (nodeIds.indexOf(g.getAttribute("data-node")) >= 0) { g.classList.add("hl"); }
    });
    mapSvg.querySelectorAll("g.edge-group").forEach(function (g) {
      if (edgeIds.indexOf(g.getAttribute("data-edge")) >= 0) {
        g.querySelector("path.edge").classList.add("hl");
      }
    });
  }
  function kv(dl, name, value) {
    if (value === undefined || value === null || value === "" ||
      (Array.isArray(value) && !value.length)) { return; }
    dl.appendChild(el("h4", null, name));
    if (Array.isArray(value)) { dl.appendChild(el("div", null, value.join(", "))); }
    else if (typeof value === "object") { dl.appendChild(value); }
    else { dl.appendChild(el("div", null, value)); }
  }
  function edgeButton(e) {
    var b = el("button", "link", nodeLabel(e.from) + " \u2192 " + nodeLabel(e.to));
    b.addEventListener("click", function () { showEdge(e.id); });
    return add(el("li"), b, " ", el("span", "pill " + e.status, e.status),
      e.flows ? " " + num(e.flows) + " flows" : "");
  }
  function showNode(id) {
    var n = NODES[id];
    var box = document.getElementById("details");
    clear(box);
    var related = DATA.edges.filter(function (e) { return e.from === id || e.to === id; });
    var ids = [id];
    related.forEach(function (e) { ids.push(e.from, e.to); });
    focus(ids, related.map(function (e) { return e.id; }));
    mapSvg.querySelector('g.node[data-node="' + CSS.escape(id) + '"]').classList.add("selected");
    add(box, el("h3", null, n.label), el("div", "muted", {
      group: "policy group", vnet: "VNet", bucket: "outside the groups",
      "service-tag": "Azure service tag" }[n.kind] || n.kind));
    kv(box, "Selector", n.selector);
    kv(box, "Description", n.description);
    if (n.kind === "group" || n.kind === "vnet") {
      kv(box, "Members", num(n.members) + " IP configurations on " + num(n.nics) + " NICs");
      kv(box, "Subscriptions", n.subscriptions);
      kv(box, "VNets", n.vnets);
      kv(box, "External ranges", n.external);
    }
    kv(box, "Flows", num(n.flowsOut) + " out, " + num(n.flowsIn) + " in");
    var findings = n.findings || {};
    kv(box, "Findings", Object.keys(findings).map(function (k) {
      return findings[k] + " " + k;
    }));
    if (related.length) {
      var ul = el("ul");
      related.forEach(function (e) { ul.appendChild(edgeButton(e)); });
      kv(box, "Edges", ul);
    }
    var rows = n.sample || n.addresses || [];
    if (rows.length) {
      var t = el("table");
      var body = headRow(t, n.addresses ? ["Address", "Host", "Flows"] : ["Address", "Host"]);
      rows.forEach(function (r) {
        var tr = el("tr");
        cell(tr, r.ip);
        cell(tr, r.host, "wrap");
        if (n.addresses) { cell(tr, num(r.flows), "num"); }
        body.appendChild(tr);
      });
      kv(box, n.addresses ? "Top addresses" : "Members (first " + rows.length + ")",
        wrapTable(t));
    }
  }
  function nsgText(allowed, flows) {
    if (!flows) { return ""; }
    return allowed === flows ? "allowed" : allowed ? "partly allowed" : "denied";
  }
  function intro() {
    var box = document.getElementById("details");
    clear(box);
    add(box, el("h3", null, "Reading the map"), list([
      "Circles are " + (DATA.meta.hasPolicy ? "policy groups" : "VNets") + " (size: members)" +
        " and the outside buckets; a red badge counts findings on members.",
      "Blue: traffic a policy allow rule admits (width: flows). Dashed amber: an allow rule" +
        " no flow used in the window.",
      "Red: observed flows the policy does not allow. Grey: flows the policy does not govern.",
      "Click a circle or an edge (or a row below) for members, rules, ports and pairs."]));
    var worst = DATA.edges.filter(function (e) { return e.status === "violation"; })
      .sort(function (a, b) { return b.flows - a.flows; }).slice(0, 5);
    if (worst.length) {
      var ul = el("ul");
      worst.forEach(function (e) { ul.appendChild(edgeButton(e)); });
      kv(box, "Largest flows not allowed by policy", ul);
    }
  }
  function showEdge(id) {
    var e = EDGES[id];
    var box = document.getElementById("details");
    clear(box);
    focus([e.from, e.to], [id]);
    var g = mapSvg.querySelector('g.edge-group[data-edge="' + CSS.escape(id) + '"]');
    if (g) { g.querySelector("path.edge").classList.add("selected"); }
    add(box, el("h3", null, nodeLabel(e.from) + " \u2192 " + nodeLabel(e.to)),
      add(el("div"), el("span", "pill " + e.status, STATUS_TEXT[e.status])));
    if (e.rules && e.rules.length) {
      var rt = el("table");
      var rb = headRow(rt, ["Rule", "Protocol", "Ports", "Flows"]);
      e.rules.forEach(function (r) {
        var tr = el("tr");
        cell(tr, r.priority + " " + r.name, "wrap");
        cell(tr, r.protocol);
        cell(tr, r.ports, "wrap");
        cell(tr, DATA.meta.hasFlows ? num(r.flows) : "\u2013", "num");
        rb.appendChild(tr);
      });
      kv(box, "Policy rules", wrapTable(rt));
    }
    kv(box, "Why", (e.reasons || []).map(function (r) {
      return r.reason + " (" + num(r.flows) + " flows)";
    }));
    if (e.flows) {
      kv(box, "Traffic", num(e.flows) + " flows, " + bytes(e.bytes) + "; NSGs allowed " +
        num(e.nsgAllowed) + ", denied " + num(e.nsgDenied));
      kv(box, "Seen", when(e.first) + " \u2192 " + when(e.last));
      kv(box, "Ports", e.ports.map(function (p) {
        return p.port + "/" + p.protocol + " (" + num(p.flows) + ")";
      }));
      var t = el("table");
      var body = headRow(t, ["Source \u2192 destination", "Port", "Flows", "NSG"]);
      e.pairs.forEach(function (p) {
        var tr = el("tr");
        var who = add(el("div"), p.src + " \u2192 " + p.dst);
        if (p.srcHost || p.dstHost) {
          add(who, el("div", "muted", (p.srcHost || "?") + " \u2192 " + (p.dstHost || "?")));
        }
        cell(tr, who, "wrap");
        cell(tr, p.port + "/" + p.protocol);
        cell(tr, num(p.flows), "num");
        cell(tr, nsgText(p.nsgAllowed, p.flows));
        body.appendChild(tr);
      });
      kv(box, "Top pairs (" + num(e.pairs.length) + " of " + num(e.pairCount) + ")",
        wrapTable(t));
    }
  }
  function edgeFilters() {
    var box = document.getElementById("edge-filters");
    var present = {};
    DATA.edges.forEach(function (e) { present[e.status] = (present[e.status] || 0) + 1; });
    STATUS_ORDER.forEach(function (status) {
      if (!present[status]) { return; }
      var input = el("input");
      input.type = "checkbox";
      input.checked = true;
      input.setAttribute("data-status", status);
      input.addEventListener("change", function () {
        document.querySelectorAll('[data-status="' + status + '"]').forEach(function (x) {
          if (x !== input) { x.classList.toggle("off", !input.checked); }
        });
      });
      add(box, add(el("label"), input, el("span", "sw " + status),
        STATUS_TEXT[status] + " (" + present[status] + ")"));
    });
  }
  function edgeTable() {
    var t = el("table");
    t.id = "edge-table";
    var body = headRow(t, ["Status", "From", "To", "Rules / why", "Flows", "Bytes",
      "NSGs today", "Top ports"]);
    var order = {};
    STATUS_ORDER.forEach(function (s, i) { order[s] = i; });
    DATA.edges.slice().sort(function (a, b) {
      return (order[a.status] - order[b.status]) || (b.flows - a.flows) ||
        (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    }).forEach(function (e) {
      var tr = el("tr", "clickable");
      tr.setAttribute("data-status", e.status);
      cell(tr, el("span", "pill " + e.status, e.status));
      cell(tr, nodeLabel(e.from), "wrap");
      cell(tr, nodeLabel(e.to), "wrap");
      cell(tr, e.rules ? e.rules.map(function (r) { return r.name; }).join(", ") :
        (e.reasons || []).map(function (r) { return r.reason; }).join(", "), "wrap");
      cell(tr, DATA.meta.hasFlows ? num(e.flows) : "\u2013", "num");
      cell(tr, e.flows ? bytes(e.bytes) : "", "num");
      cell(tr, nsgText(e.nsgAllowed, e.flows));
      cell(tr, e.ports.slice(0, 4).map(function (p) {
        return p.port + "/" + p.protocol;
      }).join(", "));
      tr.addEventListener("click", function () {
        showEdge(e.id);
        document.getElementById("map").scrollIntoView({ block: "start" });
      });
      body.appendChild(tr);
    });
    document.getElementById("edges").appendChild(wrapTable(t));
  }
  function ruleTable() {
    if (!DATA.rules.length) { return; }
    var t = el("table");
    t.id = "rule-table";
    var body = headRow(t, ["Priority", "Rule", "From", "To", "Protocol", "Ports", "Action",
      "Flows matched"]);
    DATA.rules.forEach(function (r) {
      var tr = el("tr");
      cell(tr, r.priority, "num");
      cell(tr, r.name, "wrap");
      cell(tr, r.from);
      cell(tr, r.to);
      cell(tr, r.protocol);
      cell(tr, r.ports, "wrap");
      cell(tr, r.action);
      var used = DATA.meta.hasFlows ? num(r.flows) : "\u2013";
      var c = cell(tr, used, "num");
      if (DATA.meta.hasFlows && r.action === "allow" && !r.flows) {
        c.textContent = "";
        c.appendChild(el("span", "pill unused", "never used"));
      }
      body.appendChild(tr);
    });
    document.getElementById("rules").appendChild(add(el("div"), el("h3", null,
      "Policy rules (first match by priority)"), wrapTable(t)));
  }

  // -- findings -------------------------------------------------------------------------------
  function findings() {
    var root = document.getElementById("findings");
    if (!DATA.findings.length) {
      root.appendChild(el("p", "muted", "No findings in the inputs."));
      return;
    }
    var counts = {};
    var detections = {};
    DATA.findings.forEach(function (f) {
      counts[f.severity] = (counts[f.severity] || 0) + 1;
      detections[f.detection] = (detections[f.detection] || 0) + 1;
    });
    var controls = el("div", "controls");
    var boxes = [];
    SEVERITIES.forEach(function (s) {
      if (!counts[s]) { return; }
      var input = el("input");
      input.type = "checkbox";
      input.checked = true;
      input.setAttribute("data-severity", s);
      boxes.push(input);
      add(controls, add(el("label"), input, el("span", "sev " + s, s), " " + counts[s]));
    });
    var select = el("select");
    select.id = "detection-filter";
    add(select, el("option", null, "all detections"));
    select.firstChild.value = "";
    Object.keys(detections).sort().forEach(function (d) {
      var o = el("option", null, d + " (" + detections[d] + ")");
      o.value = d;
      select.appendChild(o);
    });
    var search = el("input");
    search.type = "search";
    search.placeholder = "filter text";
    search.id = "finding-search";
    var shown = el("span", "muted");
    shown.id = "finding-count";
    add(controls, select, search, shown);
    root.appendChild(controls);
    var t = el("table");
    t.id = "finding-table";
    var body = headRow(t, ["Severity", "Detection", "Finding", "Resource", "Observed", ""]);
    var rows = [];
    DATA.findings.forEach(function (f) {
      var tr = el("tr");
      tr.setAttribute("data-severity", f.severity);
      tr.setAttribute("data-detection", f.detection);
      cell(tr, el("span", "sev " + f.severity, f.severity));
      cell(tr, f.detection);
      cell(tr, f.title, "wrap");
      var res = cell(tr, portalLink(f.portal, cut(lastSegment(f.resource), 48)), "wrap");
      res.title = f.resource;
      cell(tr, when(f.observedAt));
      var toggle = el("button", "link", "evidence");
      cell(tr, toggle);
      var extra = el("tr", "off");
      var td = el("td");
      td.colSpan = 6;
      add(td, el("div", "muted", "fingerprint " + f.fingerprint + " \u00b7 " + f.resource),
        el("pre", "evidence", JSON.stringify(f.evidence, null, 2)));
      extra.appendChild(td);
      toggle.addEventListener("click", function () { extra.classList.toggle("off"); });
      body.appendChild(tr);
      body.appendChild(extra);
      rows.push({ f: f, tr: tr, extra: extra,
        text: (f.title + " " + f.resource + " " + f.detection + " " +
          JSON.stringify(f.evidence)).toLowerCase() });
    });
    function apply() {
      var wanted = {};
      boxes.forEach(function (b) { wanted[b.getAttribute("data-severity")] = b.checked; });
      var needle = search.value.trim().toLowerCase();
      var n = 0;
      rows.forEach(function (r) {
        var on = wanted[r.f.severity] && (!select.value || select.value === r.f.detection) &&
          (!needle || r.text.indexOf(needle) >= 0);
        r.tr.classList.toggle("off", !on);
        if (!on) { r.extra.classList.add("off"); }
        if (on) { n++; }
      });
      shown.textContent = "showing " + n + " of " + rows.length;
    }
    boxes.forEach(function (b) { b.addEventListener("change", apply); });
    select.addEventListener("change", apply);
    search.addEventListener("input", apply);
    root.appendChild(wrapTable(t));
    apply();
  }

  // -- blast radius ---------------------------------------------------------------------------
  function blast() {
    var root = document.getElementById("blast");
    if (!DATA.blast.length) {
      root.appendChild(el("p", "muted", "No blast-radius findings in the inputs " +
        "(findings with detection blast_radius, from zts analyze)."));
      return;
    }
    var select = el("select");
    select.id = "blast-origin";
    DATA.blast.forEach(function (b, i) {
      var o = el("option", null, b.origin + (b.host ? " (" + cut(b.host, 40) + ")" : "") +
        " \u2014 " + b.reached.length + " reached, up to " + b.maxHops + " hops");
      o.value = String(i);
      select.appendChild(o);
    });
    var view = el("div");
    view.id = "blast-view";
    add(root, add(el("div", "controls"), add(el("label"), "Origin ", select)), view);
    select.addEventListener("change", function () { drawBlast(DATA.blast[+select.value]); });
    drawBlast(DATA.blast[0]);
  }
  function drawBlast(b) {
    var view = document.getElementById("blast-view");
    clear(view);
    var head = el("div", "panel");
    add(head, el("h3", null, b.title), el("div", null, "Origin " + b.origin +
      (b.host ? " (" + b.host + ")" : "") + " in " + nodeLabel(b.node) +
      ", compromised since " + when(b.since)));
    if (b.reasons.length) { add(head, el("div", "muted", "Why: " + b.reasons.join("; "))); }
    add(head, el("div", null, b.reached.length + " host(s) reached, up to " + b.maxHops +
      " hop(s)" + (b.policy.computed ? "; " + b.policy.hosts + " reachable by policy" +
      (b.policy.notObserved.length ? " (" + b.policy.notObserved.length +
      " not yet observed)" : "") : b.policy.reason ? "; reach by policy not computed: " +
      b.policy.reason : "")));
    if (b.portal) { add(head, add(el("div"), portalLink(b.portal, "Open the origin in the " +
      "Azure portal"))); }
    view.appendChild(head);
    var times = b.reached.map(function (h) { return Date.parse(h.firstSeen); })
      .filter(function (t) { return !isNaN(t); });
    var t0 = Date.parse(b.since);
    if (isNaN(t0)) { t0 = times.length ? Math.min.apply(null, times) : 0; }
    var t1 = Math.max.apply(null, times.concat([t0 + 60000]));
    var lanes = b.maxHops + 1;
    var width = 1000;
    var left = 70;
    var right = 170;
    var top = 30;
    var laneH = 56;
    var height = top + lanes * laneH + 40;
    var chart = svg("svg", { viewBox: "0 0 " + width + " " + height, "class": "blast",
      role: "img", "aria-label": "hosts reached by hop over time" });
    function x(t) { return left + (width - left - right) * (t - t0) / (t1 - t0); }
    function y(hop) { return top + hop * laneH + laneH / 2; }
    for (var h = 0; h < lanes; h++) {
      chart.appendChild(svg("line", { x1: left, x2: width - right, y1: y(h), y2: y(h),
        "class": "lane" }));
      var lab = svg("text", { x: 8, y: y(h) + 4, "class": "lane-label" });
      lab.textContent = h === 0 ? "origin" : "hop " + h;
      chart.appendChild(lab);
    }
    for (var i = 0; i <= 4; i++) {
      var tt = t0 + (t1 - t0) * i / 4;
      var tick = svg("text", { x: x(tt), y: height - 12, "text-anchor": "middle",
        "class": "tick" });
      tick.textContent = new Date(tt).toISOString().slice(11, 19);
      chart.appendChild(tick);
    }
    var pos = {};
    pos[b.origin] = [x(t0), y(0)];
    b.reached.forEach(function (r) {
      var t = Date.parse(r.firstSeen);
      pos[r.ip] = [x(isNaN(t) ? t0 : t), y(r.hops || 0)];
    });
    b.reached.forEach(function (r) {
      var from = pos[r.via];
      if (!from) { return; }
      var to = pos[r.ip];
      chart.appendChild(svg("path", { d: "M" + from[0] + "," + from[1] + " C" +
        (from[0] + to[0]) / 2 + "," + from[1] + " " + (from[0] + to[0]) / 2 + "," + to[1] +
        " " + to[0] + "," + to[1], "class": "hop-link" }));
    });
    var freeAt = {};  // per lane and row (above, below): where the next label may start
    function dot(ip, host, p, cls) {
      var g = svg("g", { "class": "hop", "data-ip": ip });
      var title = svg("title");
      title.textContent = ip + (host ? " " + host : "");
      g.appendChild(title);
      g.appendChild(svg("circle", { cx: p[0], cy: p[1], r: 6, "class": cls }));
      var text = cut(host || ip, 22);
      var rows = [-9, 19];
      for (var k = 0; k < rows.length; k++) {
        var slot = p[1] + ":" + k;
        if ((freeAt[slot] || -1) <= p[0]) {
          var label = svg("text", { x: p[0] + 8, y: p[1] + rows[k], "class": "hop-label" });
          label.textContent = text;
          g.appendChild(label);
          freeAt[slot] = p[0] + 12 + text.length * 6.2;
          break;
        }
      }
      chart.appendChild(g);
    }
    dot(b.origin, b.host, pos[b.origin], "hop-dot origin");
    b.reached.forEach(function (r) { dot(r.ip, r.host, pos[r.ip], "hop-dot"); });
    view.appendChild(chart);
    var t = el("table");
    t.id = "blast-table";
    var body = headRow(t, ["Hop", "Address", "Host", "Group", "First seen", "Via"]);
    b.reached.forEach(function (r) {
      var tr = el("tr");
      cell(tr, r.hops === null ? "?" : r.hops, "num");
      cell(tr, r.ip);
      cell(tr, r.host, "wrap");
      cell(tr, nodeLabel(r.node), "wrap");
      cell(tr, when(r.firstSeen));
      cell(tr, r.via);
      body.appendChild(tr);
    });
    view.appendChild(wrapTable(t));
  }

  // -- plan -----------------------------------------------------------------------------------
  function plan() {
    var root = document.getElementById("plan");
    var p = DATA.plan;
    if (!p) {
      root.appendChild(el("p", "muted", "No plan: give a policy to see what zts would change."));
      return;
    }
    add(root, el("p", null, p.source + (p.id ? " \u00b7 plan " + p.id : "") +
      (p.createdAt ? " \u00b7 " + when(p.createdAt) : "") + " \u00b7 " + p.nsgs.length +
      " NSG(s) change: +" + p.totals.add + " added, ~" + p.totals.change + " changed, \u2212" +
      p.totals.remove + " removed"));
    if (p.errors.length) {
      add(root, el("h4", null, "Errors"), list(p.errors.map(function (e) {
        return e.message + (e.nsg ? " [" + e.nsg + "]" : "");
      })));
    }
    p.nsgs.forEach(function (n, i) {
      var d = el("details", "nsg");
      d.setAttribute("data-nsg", n.id);
      if (i < 3) { d.open = true; }
      var s = el("summary", null, n.name + " ");
      add(s, el("span", "muted", n.resourceGroup + " \u00b7 " + n.subscriptionName + " "),
        el("span", "chg add", "+" + n.add), " ", el("span", "chg change", "~" + n.change), " ",
        el("span", "chg remove", "\u2212" + n.remove));
      d.appendChild(s);
      add(d, add(el("div", "muted"), portalLink(n.portal, "Open in the Azure portal"),
        " \u00b7 " + n.desired + " zts rule(s) after apply"));
      if (n.rules.length) {
        var t = el("table");
        var body = headRow(t, ["Change", "Rule", "Direction", "Priority", "Access", "Protocol",
          "Source", "Destination", "Ports", "Description"]);
        n.rules.forEach(function (r) {
          var tr = el("tr");
          tr.setAttribute("data-change", r.change);
          cell(tr, el("span", "chg " + r.change, r.change));
          cell(tr, r.name, "wrap");
          cell(tr, r.direction);
          cell(tr, r.priority, "num");
          cell(tr, r.access);
          cell(tr, r.protocol);
          cell(tr, r.source, "wrap");
          cell(tr, r.destination, "wrap");
          cell(tr, r.ports, "wrap");
          cell(tr, r.description, "wrap");
          body.appendChild(tr);
        });
        d.appendChild(wrapTable(t));
      }
      if (n.errors.length) { add(d, el("h4", null, "Errors"), list(n.errors)); }
      if (n.warnings.length) { add(d, el("h4", null, "Warnings"), list(n.warnings)); }
      root.appendChild(d);
    });
    if (p.warnings.length) {
      add(root, el("h4", null, "Warnings"), list(p.warnings.map(function (w) {
        return w.message + (w.rule ? " [rule " + w.rule + "]" : "");
      })));
    }
  }

  header();
  tabs();
  buildMap();
  intro();
  edgeFilters();
  edgeTable();
  ruleTable();
  findings();
  blast();
  plan();
  document.body.setAttribute("data-ready", "1");
}());
