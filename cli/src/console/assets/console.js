// certops console: the only script. Live refresh while something runs, and
// the graph's cross-reference to the event history. No other network access:
// it only fetches the page it is on, as JSON, from the same origin.
(function () {
  "use strict";
  var body = document.body;

  function signature(doc) {
    if (doc && doc.execution && doc.events) {
      return doc.execution.status + ":" + doc.events.length;
    }
    if (doc && doc.executions) {
      return doc.executions.map(function (r) { return r.name + ":" + r.outcome; }).join("|");
    }
    return null;
  }

  var live = body && body.getAttribute("data-live");
  if (live !== null && live !== undefined) {
    var timer = setInterval(function () {
      fetch(window.location.href, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (doc) {
          var now = signature(doc);
          if (now !== null && now !== live) {
            clearInterval(timer);
            window.location.reload();
          }
        })
        .catch(function () { /* the next tick tries again */ });
    }, 2000);
  }

  function select(state) {
    document.querySelectorAll("#history tr[data-state], #durations tr[data-state]").forEach(function (tr) {
      tr.classList.toggle("hl", tr.getAttribute("data-state") === state);
    });
    document.querySelectorAll("svg.graph g.node").forEach(function (g) {
      g.classList.toggle("selected", g.getAttribute("data-state") === state);
    });
    var first = document.querySelector("#history tr.hl");
    if (first) { first.scrollIntoView({ block: "nearest" }); }
  }

  document.querySelectorAll("svg.graph g.node").forEach(function (g) {
    g.addEventListener("click", function () { select(g.getAttribute("data-state")); });
    g.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(g.getAttribute("data-state")); }
    });
  });
})();
