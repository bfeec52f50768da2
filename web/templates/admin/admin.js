/* Hexie admin: the definition editor's line numbers and live check (progressive enhancement:
   the page works without it). Served from the app itself; no inline script (CSP). */
(function () {
  "use strict";
  var form = document.querySelector("form.editor-form");
  if (!form) { return; }
  var text = form.querySelector("textarea.editor-text");
  var gutter = form.querySelector(".editor-gutter");
  var summary = document.getElementById("check-summary");
  var list = document.getElementById("diagnostics");
  var preview = document.getElementById("preview");
  var previewNote = document.getElementById("preview-note");
  var panel = preview ? preview.closest(".editor-preview") : null;
  var url = form.getAttribute("data-check-url");
  var token = form.getAttribute("data-csrf");
  var errorLines = {};
  var timer = null;
  var sequence = 0;

  function lineCount() { return text.value.split("\n").length; }

  function drawGutter() {
    var count = lineCount();
    var parts = [];
    for (var n = 1; n <= count; n++) {
      parts.push(errorLines[n] ? '<span class="gutter-error">' + n + "</span>" : "<span>" + n + "</span>");
    }
    gutter.innerHTML = parts.join("\n") + "\n";   // numbers only: nothing typed goes in here
    gutter.scrollTop = text.scrollTop;
  }

  function goToLine(line, column) {
    var lines = text.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { start += lines[i].length + 1; }
    var end = start + (lines[line - 1] || "").length;
    text.focus();
    text.setSelectionRange(Math.min(start + Math.max(column - 1, 0), end), end);
    var height = text.scrollHeight / Math.max(lines.length, 1);
    text.scrollTop = Math.max(0, (line - 5) * height);
  }

  function showDiagnostics(items) {
    list.textContent = "";
    errorLines = {};
    items.forEach(function (d) {
      if (d.severity === "error") { errorLines[d.line] = true; }
      var li = document.createElement("li");
      li.className = "diagnostic diagnostic-" + d.severity;
      var a = document.createElement("a");
      a.href = "#source";
      a.textContent = d.where;
      a.setAttribute("data-line", d.line);
      a.setAttribute("data-column", d.column);
      li.appendChild(a);
      var tag = document.createElement("span");
      tag.className = "tag " + (d.severity === "error" ? "tag-late" : "tag-alert");
      tag.textContent = d.severity_text;
      li.appendChild(tag);
      if (d.path) {
        li.appendChild(document.createTextNode(" "));
        var code = document.createElement("code");
        code.textContent = d.path;
        li.appendChild(code);
      }
      li.appendChild(document.createTextNode(" " + d.message));
      list.appendChild(li);
    });
    drawGutter();
  }

  function check() {
    var mine = ++sequence;
    if (panel) { panel.classList.add("is-checking"); }
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": token, "Accept": "application/json" },
      body: JSON.stringify({ source: text.value })
    }).then(function (response) {
      return response.json();
    }).then(function (result) {
      if (mine !== sequence) { return; }          // a newer check is on its way
      if (result.error) { summary.textContent = result.error.message; return; }
      summary.textContent = "";
      var p = document.createElement("p");
      p.className = result.ok ? "admin-ok" : "error";
      p.textContent = result.summary;
      summary.appendChild(p);
      showDiagnostics(result.diagnostics || []);
      if (result.svg) {
        preview.innerHTML = result.svg;           // drawn and escaped by the server (web/diagram.py)
      }
      if (previewNote) { previewNote.hidden = !!result.svg; }
    }).catch(function () {
      /* offline or signed out: the Check button still works */
    }).then(function () {
      if (panel && mine === sequence) { panel.classList.remove("is-checking"); }
    });
  }

  text.addEventListener("input", function () {
    drawGutter();
    window.clearTimeout(timer);
    timer = window.setTimeout(check, 600);
  });
  text.addEventListener("scroll", function () { gutter.scrollTop = text.scrollTop; });
  // Tab indents by two spaces (YAML has no tabs); Shift+Tab leaves the field as usual.
  text.addEventListener("keydown", function (event) {
    if (event.key === "Tab" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      var start = text.selectionStart;
      text.setRangeText("  ", start, text.selectionEnd, "end");
      text.dispatchEvent(new Event("input"));
    }
  });
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a[data-line]") : null;
    if (!link || !form.contains(link)) { return; }
    event.preventDefault();
    goToLine(parseInt(link.getAttribute("data-line"), 10), parseInt(link.getAttribute("data-column") || "1", 10));
  });
  // Lines already marked by a server-side check.
  Array.prototype.forEach.call(list.querySelectorAll("a[data-line]"), function (a) {
    if (a.parentNode.classList.contains("diagnostic-error")) { errorLines[a.getAttribute("data-line")] = true; }
  });
  drawGutter();
})();
