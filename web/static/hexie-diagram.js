/* Hexie: the process map, laid out in the browser by the Eclipse Layout Kernel.

   The server draws a simple map itself (web/diagram.py) and puts the process on it as a
   graph, <svg class="diagram" data-graph="{...}">. This script, loaded by hexie.js after
   vendor/elkjs/elk.bundled.js (both served by the app: no CDN, no worker, no eval, so the
   strict CSP holds), lays that graph out with ELK's layered algorithm (edge labels placed
   by ELK, orthogonal edges) and puts its own drawing in place of the server's, in the
   direction that fits the panel best: left to right on a wide screen, top to bottom on a
   phone, scaled down to the panel's width when still too wide. Every text comes from a
   definition: it goes in with textContent, never as markup. Without JavaScript the
   server's drawing stays. */
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var FONT = 13;            // state names
  var EDGE_FONT = 12;       // edge labels
  var ACCENT = "#c8102e";
  var MIN_SCALE = 0.8;     // below this a drawing scrolls instead of shrinking further
  var serial = 0;
  var elk = null;

  function make(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }

  function text(parent, attrs, value) {
    var node = make("text", attrs, parent);
    node.textContent = value;
    return node;
  }

  // --------------------------------------------------------------- measuring text

  function Measure(host) {
    this.svg = make("svg", { "class": "diagram", "aria-hidden": "true", width: "1", height: "1" });
    this.svg.style.position = "absolute";
    this.svg.style.visibility = "hidden";
    this.svg.style.left = "-10000px";
    host.appendChild(this.svg);
    this.node = make("text", {}, this.svg);
    this.cache = {};
  }
  Measure.prototype.width = function (value, size, bold) {
    var key = size + (bold ? "b" : "") + "|" + value;
    if (!(key in this.cache)) {
      this.node.setAttribute("font-size", size);
      this.node.setAttribute("font-weight", bold ? "bold" : "normal");
      this.node.textContent = value;
      this.cache[key] = this.node.getComputedTextLength();
    }
    return this.cache[key];
  };
  Measure.prototype.done = function () { this.svg.remove(); };

  var CJK = /[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f]/;

  // Break a text into lines of at most ``room`` pixels: between words in Latin text,
  // between characters in Chinese (never before a closing punctuation mark).
  function wrap(measure, value, size, room, bold) {
    var tokens = [];
    var word = "";
    for (var i = 0; i < value.length; i++) {
      var ch = value.charAt(i);
      if (CJK.test(ch)) {
        if (word) { tokens.push(word); word = ""; }
        if (tokens.length && /[，。、：；）」”！？)]/.test(ch)) { tokens[tokens.length - 1] += ch; } else { tokens.push(ch); }
      } else if (ch === " ") {
        if (word) { tokens.push(word); word = ""; }
        tokens.push(" ");
      } else {
        word += ch;
      }
    }
    if (word) { tokens.push(word); }
    var lines = [];
    var line = "";
    tokens.forEach(function (token) {
      var next = line + token;
      if (line.trim() && measure.width(next.trim(), size, bold) > room) {
        lines.push(line.trim());
        line = token === " " ? "" : token;
      } else {
        line = next;
      }
    });
    if (line.trim()) { lines.push(line.trim()); }
    return lines.length ? lines : [""];
  }

  // --------------------------------------------------------------- the ELK graph

  // The drawings tried for a map, shortest first; the first that fits its panel is shown
  // (ProcessMap.choose).
  //   row:    left to right, one row (short programmes on a wide screen)
  //   column: top to bottom
  //   narrow: top to bottom with narrower boxes and labels (phones)
  var SHAPES = {
    row: { direction: "RIGHT", node: 136, label: 118 },
    column: { direction: "DOWN", node: 136, label: 150 },
    narrow: { direction: "DOWN", node: 80, label: 72, tight: true }
  };

  // The graph in ELK's JSON (``input``), every box and label measured in the page's font,
  // and ``info``: id -> what the drawing needs besides ELK's coordinates.
  function elkGraph(data, measure, shape) {
    var nodes = [];
    var edges = [];
    var lineH = Math.round(FONT * 1.35);
    data.states.forEach(function (s) {
      var bold = !!s.current;
      var lines = wrap(measure, s.label, FONT, shape.node, bold);
      var textW = Math.max.apply(null, lines.map(function (l) { return measure.width(l, FONT, bold); }));
      // work decided at run time: a note under the label (for each …, calls …) and room for its marker
      var notes = s.note ? wrap(measure, s.note, EDGE_FONT, shape.node, false) : [];
      var noteW = notes.length ? Math.max.apply(null, notes.map(function (l) { return measure.width(l, EDGE_FONT, false); })) : 0;
      var marked = s.for_each || s.calls || s.interleaved;
      nodes.push({
        id: "s:" + s.id, width: Math.ceil(Math.max(textW + 28, noteW + 20, 86)),
        height: Math.max(40, lines.length * lineH + 20) + notes.length * Math.round(EDGE_FONT * 1.3) + (marked ? 12 : 0),
        state: s, lines: lines, notes: notes
      });
    });
    var initial = data.states.filter(function (s) { return s.initial; })[0];
    if (initial) {
      nodes.unshift({ id: "start", width: 14, height: 14, start: true,
                      layoutOptions: { "elk.layered.layering.layerConstraint": "FIRST" } });
      edges.push({ id: "start-edge", sources: ["start"], targets: ["s:" + initial.id], edge: { start: true } });
    }
    if (data.edges.some(function (e) { return e.source === "*"; })) {
      var anyW = Math.ceil(measure.width(data.any, EDGE_FONT, false) + 20);
      nodes.push({ id: "s:*", width: anyW, height: 28, any: true, lines: [data.any] });
    }
    var edgeLine = Math.round(EDGE_FONT * 1.3);
    data.edges.forEach(function (e) {
      var item = { id: e.id, sources: ["s:" + e.source], targets: ["s:" + e.target], edge: e, labels: [] };
      if (e.label) {
        var lines = wrap(measure, e.label, EDGE_FONT, shape.label, false);
        var w = Math.max.apply(null, lines.map(function (l) { return measure.width(l, EDGE_FONT, false); }));
        item.labels.push({ id: e.id + ":label", text: e.label, lines: lines,
                           width: Math.ceil(w + 8), height: lines.length * edgeLine + 4 });
      }
      edges.push(item);
    });
    var info = {};
    nodes.forEach(function (n) { info[n.id] = n; });
    edges.forEach(function (e) {
      info[e.id] = e;
      (e.labels || []).forEach(function (l) { info[l.id] = l; });
    });
    var options = {
      "elk.algorithm": "layered",
      "elk.direction": shape.direction,
      "elk.edgeRouting": "ORTHOGONAL",
      "elk.padding": "[top=10,left=10,bottom=10,right=10]",
      "elk.spacing.nodeNode": shape.tight ? "12" : "22",
      "elk.spacing.edgeNode": shape.tight ? "9" : "14",
      "elk.spacing.edgeEdge": shape.tight ? "6" : "9",
      "elk.spacing.edgeLabel": "3",
      "elk.spacing.labelNode": "6",
      "elk.spacing.nodeSelfLoop": "20",
      "elk.layered.spacing.nodeNodeBetweenLayers": "34",
      "elk.layered.spacing.edgeNodeBetweenLayers": shape.tight ? "10" : "14",
      "elk.layered.spacing.edgeEdgeBetweenLayers": shape.tight ? "6" : "9",
      "elk.layered.edgeLabels.sideSelection": "SMART_UP",
      "elk.layered.considerModelOrder.strategy": "NODES_AND_EDGES",
      "elk.layered.cycleBreaking.strategy": "MODEL_ORDER",
      "elk.layered.nodePlacement.strategy": "NETWORK_SIMPLEX",
      "elk.layered.crossingMinimization.semiInteractive": "false",
      "elk.layered.thoroughness": "20",
      "elk.separateConnectedComponents": "false"
    };
    return { info: info, input: {
      id: "root",
      layoutOptions: options,
      children: nodes.map(function (n) {
        return { id: n.id, width: n.width, height: n.height, layoutOptions: n.layoutOptions };
      }),
      edges: edges.map(function (e) {
        return { id: e.id, sources: e.sources, targets: e.targets, labels: (e.labels || []).map(function (l) {
          return { id: l.id, text: l.text, width: l.width, height: l.height };
        }) };
      })
    } };
  }

  // --------------------------------------------------------------- drawing

  function roundedPath(points) {
    var d = "M" + points[0].x.toFixed(1) + " " + points[0].y.toFixed(1);
    for (var i = 1; i < points.length - 1; i++) {
      var a = points[i - 1], p = points[i], b = points[i + 1];
      var inLen = Math.hypot(p.x - a.x, p.y - a.y), outLen = Math.hypot(b.x - p.x, b.y - p.y);
      var r = Math.min(7, inLen / 2, outLen / 2);
      if (r < 0.5) { d += " L" + p.x.toFixed(1) + " " + p.y.toFixed(1); continue; }
      var x1 = p.x - (p.x - a.x) / inLen * r, y1 = p.y - (p.y - a.y) / inLen * r;
      var x2 = p.x + (b.x - p.x) / outLen * r, y2 = p.y + (b.y - p.y) / outLen * r;
      d += " L" + x1.toFixed(1) + " " + y1.toFixed(1) + " Q" + p.x.toFixed(1) + " " + p.y.toFixed(1) +
           " " + x2.toFixed(1) + " " + y2.toFixed(1);
    }
    var last = points[points.length - 1];
    return d + " L" + last.x.toFixed(1) + " " + last.y.toFixed(1);
  }

  function draw(data, laid) {
    var uid = "hxd" + (++serial);
    var width = Math.ceil(laid.width), height = Math.ceil(laid.height);
    var svg = make("svg", {
      "class": "diagram diagram-laid", role: "img", "aria-label": data.title,
      viewBox: "0 0 " + width + " " + height, width: width, height: height,
      "data-shape": laid.shape
    });
    svg.style.setProperty("--natural-width", width + "px");
    make("title", {}, svg).textContent = data.title;
    var defs = make("defs", {}, svg);
    [["", "#6b7280"], ["-hot", ACCENT]].forEach(function (m) {
      var marker = make("marker", { id: uid + "-arrow" + m[0], viewBox: "0 0 10 10", refX: "9", refY: "5",
                                     markerUnits: "userSpaceOnUse", markerWidth: "9", markerHeight: "9",
                                     orient: "auto-start-reverse" }, defs);
      make("path", { d: "M0 0L10 5L0 10z", fill: m[1] }, marker);
    });
    var edgeLayer = make("g", { "class": "edges" }, svg);
    var nodeLayer = make("g", { "class": "states" }, svg);
    var labelLayer = make("g", { "class": "edge-labels" }, svg);

    var info = laid.info;
    laid.edges.forEach(function (item) {
      var e = info[item.id].edge;
      var hot = !!e.hot;
      var group = make("g", { "class": "edge" + (hot ? " hot" : "") + (e.timer ? " timer" : "") +
                                       (e.auto ? " auto" : "") + (e.loop ? " loop" : "") }, edgeLayer);
      if (e.title) { make("title", {}, group).textContent = e.title; }
      (item.sections || []).forEach(function (section) {
        var points = [section.startPoint].concat(section.bendPoints || [], [section.endPoint]);
        make("path", {
          d: roundedPath(points), fill: "none", stroke: e.start ? "#374151" : (hot ? ACCENT : "#9ca3af"),
          "stroke-width": hot ? "2" : "1.3", "stroke-dasharray": e.timer ? "5 4" : (e.auto ? "2 3" : "none"),
          "marker-end": "url(#" + uid + "-arrow" + (hot ? "-hot" : "") + ")"
        }, group);
      });
      (item.labels || []).forEach(function (label) {
        label.lines = info[label.id].lines;
        var box = make("g", { "class": "edge-label" + (hot ? " hot" : "") }, labelLayer);
        if (e.title) { make("title", {}, box).textContent = e.title; }
        make("rect", { x: label.x.toFixed(1), y: label.y.toFixed(1), width: label.width, height: label.height,
                       rx: "3", fill: "#ffffff", "fill-opacity": "0.94" }, box);
        var lineH = Math.round(EDGE_FONT * 1.3);
        label.lines.forEach(function (line, i) {
          text(box, { x: (label.x + label.width / 2).toFixed(1), y: (label.y + 2 + EDGE_FONT + i * lineH).toFixed(1),
                      "text-anchor": "middle", "font-size": EDGE_FONT, fill: hot ? ACCENT : "#4b5563",
                      "font-weight": hot ? "600" : "normal" }, line);
        });
      });
    });

    laid.children.forEach(function (node) {
      node.start = info[node.id].start;
      node.state = info[node.id].state;
      node.lines = info[node.id].lines;
      node.notes = info[node.id].notes || [];
      node.any = info[node.id].any;
      if (node.any) {
        var any = make("g", { "class": "any-step" }, nodeLayer);
        make("rect", { x: node.x, y: node.y, width: node.width, height: node.height, rx: "14", ry: "14",
                       fill: "#ffffff", stroke: "#9ca3af", "stroke-width": "1", "stroke-dasharray": "3 3" }, any);
        text(any, { x: node.x + node.width / 2, y: (node.y + node.height / 2 + EDGE_FONT * 0.36).toFixed(1),
                    "text-anchor": "middle", "font-size": EDGE_FONT, fill: "#4b5563" }, node.lines[0]);
        return;
      }
      if (node.start) {
        var dot = make("g", { "class": "start" }, nodeLayer);
        make("title", {}, dot).textContent = data.start;
        make("circle", { cx: node.x + 7, cy: node.y + 7, r: 7, fill: "#374151" }, dot);
        return;
      }
      var s = node.state;
      var classes = "state" + (s.current ? " current" : "") + (s.final ? " final" : "") + (s.initial ? " initial" : "") +
                    (s.for_each ? " for-each" : "") + (s.calls ? " calls" : "") + (s.interleaved ? " one-at-a-time" : "");
      var parent = nodeLayer;
      if (s.calls && s.calls.href) {   // a called process: its box links to its own map
        parent = make("a", { href: s.calls.href, "class": "calls" }, nodeLayer);
      }
      var g = make("g", { "class": classes, "data-state": s.id }, parent);
      make("title", {}, g).textContent = s.label + (s.note ? ": " + s.note : "");
      var fill = s.current ? ACCENT : (s.final ? "#f3f4f6" : "#ffffff");
      var stroke = s.current ? ACCENT : (s.final ? "#6b7280" : (s.initial ? "#374151" : "#9ca3af"));
      make("rect", { x: node.x, y: node.y, width: node.width, height: node.height, rx: "10", ry: "10",
                     fill: fill, stroke: stroke, "stroke-width": s.current || s.initial ? "2.5" : "1.2" }, g);
      if (s.final) {
        make("rect", { x: node.x + 3, y: node.y + 3, width: node.width - 6, height: node.height - 6, rx: "8", ry: "8",
                       fill: "none", stroke: stroke, "stroke-width": "0.8" }, g);
      }
      var lineH = Math.round(FONT * 1.35);
      var noteH = Math.round(EDGE_FONT * 1.3);
      var marked = s.for_each || s.calls || s.interleaved;
      var body = node.height - node.notes.length * noteH - (marked ? 12 : 0);
      var first = node.y + body / 2 - (node.lines.length - 1) * lineH / 2 + FONT * 0.36;
      node.lines.forEach(function (line, i) {
        text(g, { x: node.x + node.width / 2, y: (first + i * lineH).toFixed(1), "text-anchor": "middle",
                  "font-size": FONT, fill: s.current ? "#ffffff" : "#111827",
                  "font-weight": s.current ? "bold" : "normal" }, line);
      });
      var ink = s.current ? "#ffffff" : "#4b5563";
      node.notes.forEach(function (line, i) {
        text(g, { x: node.x + node.width / 2, y: (node.y + body - 4 + EDGE_FONT + i * noteH).toFixed(1),
                  "text-anchor": "middle", "font-size": EDGE_FONT, fill: ink, "class": "state-note" }, line);
      });
      var cx = node.x + node.width / 2, foot = node.y + node.height - 4;
      if (s.for_each) {          // BPMN: three bars, one task per value (multiple instances)
        for (var b = 0; b < 3; b++) {
          make("rect", { x: (cx - 7 + b * 5).toFixed(1), y: (foot - 8).toFixed(1), width: "2", height: "7",
                         fill: ink, "class": "marker-for-each" }, g);
        }
      } else if (s.interleaved) {
        text(g, { x: cx, y: foot - 1, "text-anchor": "middle", "font-size": 9, fill: ink,
                  "class": "marker-one-at-a-time" }, "1/n");
      }
      if (s.calls) {             // BPMN: a boxed plus, a call activity
        var mark = make("g", { "class": "marker-call" }, g);
        make("rect", { x: (cx - 5).toFixed(1), y: (foot - 9).toFixed(1), width: "10", height: "9", fill: "none",
                       stroke: ink, "stroke-width": "1" }, mark);
        make("path", { d: "M" + (cx - 3) + " " + (foot - 4.5) + "H" + (cx + 3) + "M" + cx + " " + (foot - 7.5) +
                          "V" + (foot - 1.5), stroke: ink, "stroke-width": "1" }, mark);
      }
    });
    return svg;
  }

  // --------------------------------------------------------------- one map

  function ProcessMap(fallback) {
    this.fallback = fallback;
    this.data = JSON.parse(fallback.getAttribute("data-graph"));
    this.wrap = fallback.parentNode;
    this.layouts = {};
    this.shown = null;
  }

  ProcessMap.prototype.room = function () {
    var style = window.getComputedStyle(this.wrap);
    return this.wrap.clientWidth - parseFloat(style.paddingLeft || 0) - parseFloat(style.paddingRight || 0);
  };

  ProcessMap.prototype.layout = function (name) {
    if (!this.layouts[name]) {
      var measure = new Measure(this.wrap);
      var graph = elkGraph(this.data, measure, SHAPES[name]);
      measure.done();
      this.layouts[name] = elk.layout(graph.input).then(function (laid) {
        laid.shape = name;
        laid.info = graph.info;
        return laid;
      });
    }
    return this.layouts[name];
  };

  // The first shape (in SHAPES' order: shortest first) that fits the panel; when none
  // fits, the narrowest. Each shape is laid out once, and only when it is needed.
  ProcessMap.prototype.choose = function (room) {
    var self = this;
    var names = Object.keys(SHAPES);
    var tried = [];
    function next(i) {
      return self.layout(names[i]).then(function (laid) {
        tried.push(laid);
        if (laid.width <= room) { return laid; }
        if (i + 1 < names.length) { return next(i + 1); }
        return tried.reduce(function (a, b) { return b.width < a.width ? b : a; });
      });
    }
    return next(0);
  };

  ProcessMap.prototype.render = function () {
    var self = this;
    return this.choose(this.room()).then(function (laid) {
      if (self.shown && self.shown.getAttribute("data-shape") === laid.shape) {
        self.fit(self.shown, laid);
        return;
      }
      var svg = draw(self.data, laid);
      var old = self.shown || self.fallback;
      old.replaceWith(svg);
      self.shown = svg;
      self.fit(svg, laid);
    });
  };

  // Shrink to the panel (CSS max-width: 100%, the viewBox keeps the proportions), but not
  // below MIN_SCALE: narrower than that, the panel scrolls.
  ProcessMap.prototype.fit = function (svg, laid) {
    svg.style.minWidth = Math.min(Math.ceil(laid.width), Math.ceil(laid.width * MIN_SCALE)) + "px";
  };

  // --------------------------------------------------------------- start

  var maps = [];

  function start(root) {
    if (!elk) { elk = new window.ELK(); }
    (root || document).querySelectorAll("svg.diagram[data-graph]").forEach(function (fallback) {
      if (fallback.hasAttribute("data-hx-seen")) { return; }
      fallback.setAttribute("data-hx-seen", "1");
      var map;
      try { map = new ProcessMap(fallback); } catch (err) { return; }   // no graph: the server's drawing stays
      maps.push(map);
      // While ELK works, the panel keeps the height of the map it showed last (the
      // editor's preview is drawn again after every check) and the fallback stays hidden.
      var wrap = map.wrap;
      var last = wrap.getAttribute("data-hx-height");
      if (last) { wrap.style.minHeight = last + "px"; fallback.style.visibility = "hidden"; }
      map.render().then(function () {
        wrap.setAttribute("data-hx-height", Math.round(map.shown.getBoundingClientRect().height));
      }).catch(function () {
        fallback.style.visibility = "";       // the server's drawing stays
      }).then(function () { wrap.style.minHeight = ""; });
    });
  }

  if (typeof window.ELK !== "function") { return; }
  start(document);
  var timer = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(timer);
    timer = window.setTimeout(function () {
      maps = maps.filter(function (m) { return (m.shown || m.fallback).isConnected; });
      maps.forEach(function (m) { m.render(); });
    }, 150);
  });
  // The definition editor's live preview puts a new server drawing in: lay that one out too.
  new MutationObserver(function (records) {
    records.forEach(function (r) {
      r.addedNodes.forEach(function (node) {
        if (node.nodeType === 1) {
          if (node.matches("svg.diagram[data-graph]")) { start(node.parentNode); } else { start(node); }
        }
      });
    });
  }).observe(document.body, { childList: true, subtree: true });
})();
