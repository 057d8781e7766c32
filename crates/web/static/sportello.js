// Sportello: enhancements only. Every page works without this file.
// - A practice in progress follows its recipients live (server-sent events) and refreshes
//   the recipients and the timeline in place, announcing it to screen readers.
// - Section forms save the draft a moment after the user stops typing.
// - A page answering a form with errors puts the focus on its error summary, so keyboard and
//   screen-reader users start from the list of what to correct.
(function () {
  "use strict";

  function refreshRegions(ids, announce) {
    fetch(window.location.pathname, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(String(response.status)); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        ids.forEach(function (id) {
          var now = document.getElementById(id);
          var next = fresh.getElementById(id);
          // Never pull a form from under the user's fingers.
          if (now && next && !now.contains(document.activeElement)) { now.replaceWith(next); }
        });
        var status = document.getElementById("annuncio");
        if (status && announce) { status.textContent = announce; }
      })
      .catch(function () { /* the next event or a reload will do */ });
  }

  var summary = document.querySelector(".error-summary[tabindex]");
  if (summary) { summary.focus(); }

  var live = document.querySelector("[data-events]");
  if (live && window.EventSource && window.fetch && window.DOMParser) {
    var announce = live.getAttribute("data-updated-text");
    var source = new EventSource(live.getAttribute("data-events"));
    var last = null;
    source.addEventListener("update", function (event) {
      if (last !== null && event.data !== last) {
        refreshRegions(["problema-pratica", "stato-pratica", "destinatari", "cronologia"], announce);
      }
      last = event.data;
    });
  }

  var forms = document.querySelectorAll("form[data-autosave]");
  Array.prototype.forEach.call(forms, function (form) {
    if (!window.fetch || !window.FormData || !window.URLSearchParams) { return; }
    var timer = null;
    var status = form.querySelector(".autosave-status");
    form.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(function () {
        var body = new URLSearchParams(new FormData(form));
        body.set("azione", "autosalva");
        fetch(form.action, { method: "POST", body: body, credentials: "same-origin" })
          .then(function (response) {
            if (!status) { return; }
            if (response.status === 204) {
              var time = new Date().toLocaleTimeString(document.documentElement.lang, { hour: "2-digit", minute: "2-digit" });
              status.textContent = form.getAttribute("data-saved-text").replace("{time}", time);
            } else {
              status.textContent = form.getAttribute("data-failed-text");
            }
          })
          .catch(function () {
            if (status) { status.textContent = form.getAttribute("data-failed-text"); }
          });
      }, 1500);
    });
  });
})();
