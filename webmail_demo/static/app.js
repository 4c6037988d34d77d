// Live updates: one EventSource per page; the server keeps one IMAP IDLE connection per browser session.
(function () {
  "use strict";
  var box = document.body.getAttribute("data-live-box");
  if (!box || !window.EventSource) { return; }
  var tbody = document.querySelector("#msglist tbody");
  var live = document.getElementById("live");
  var es = new EventSource("/events?box=" + encodeURIComponent(box));
  var busy = false, again = false;

  function refresh() {
    if (!tbody) { return; }
    if (busy) { again = true; return; }
    busy = true;
    var url = tbody.getAttribute("data-refresh");
    url += (url.indexOf("?") < 0 ? "?" : "&") + "partial=1";
    var known = {};
    tbody.querySelectorAll("tr[data-uid]").forEach(function (tr) { known[tr.getAttribute("data-uid")] = true; });
    var checked = {};
    tbody.querySelectorAll("input[name=uid]:checked").forEach(function (i) { checked[i.value] = true; });
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) {
        tbody.innerHTML = html;
        tbody.querySelectorAll("tr[data-uid]").forEach(function (tr) {
          var uid = tr.getAttribute("data-uid");
          if (!known[uid]) { tr.classList.add("new"); }
          var cb = tr.querySelector("input[name=uid]");
          if (cb && checked[uid]) { cb.checked = true; }
        });
      })
      .catch(function () { /* the next event will try again */ })
      .finally(function () { busy = false; if (again) { again = false; refresh(); } });
  }

  function notice(text) {
    if (!live) { return; }
    live.textContent = text;
    live.hidden = false;
  }

  es.addEventListener("exists", function () {
    if (tbody) { refresh(); notice("New mail arrived."); } else { notice("New mail in " + box + "."); }
  });
  es.addEventListener("expunge", refresh);
  es.addEventListener("flags", refresh);
  es.addEventListener("ready", function () { document.body.setAttribute("data-live", "ready"); });
  window.addEventListener("pagehide", function () { es.close(); });
})();
