/* Hexie: small progressive enhancements; every page works without this file. */
(function () {
  "use strict";
  // Ask before actions that finish a case (reject, withdraw, close...).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    // One click, one submission: slow county networks invite double clicks.
    if (form.method.toLowerCase() === "post") {
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    }
  });
  // Coming back with the browser's Back button: the buttons work again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("button[type=submit][disabled]").forEach(function (b) { b.disabled = false; });
  });
  // Choosing a programme in the filter bar reloads the list (and its steps).
  document.addEventListener("change", function (event) {
    var el = event.target;
    if (el.hasAttribute && el.hasAttribute("data-autosubmit") && el.form) {
      var state = el.form.querySelector("select[name=state]");
      if (state) { state.value = ""; }
      el.form.submit();
    }
  });
})();
