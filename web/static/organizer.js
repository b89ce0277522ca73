// The organiser console's enhancements (the pages work without them):
// - the dashboard's figures refresh themselves every few seconds;
// - on a show's page, seats on the map are picked by click, Enter or Space into the
//   "Seats" field of the block form, and the map follows the on-sale live (Server-Sent
//   Events from /shows/{id}/seats/events).
(function () {
  "use strict";

  var REFRESH_MS = 3000;
  var STATUSES = ["free", "held", "sold", "blocked"];
  var WORDS = { free: "available", held: "on hold", sold: "sold", blocked: "not on sale" };

  // --- the dashboard ---
  var rows = document.getElementById("dashboard-rows");
  if (rows && rows.dataset.refresh) {
    var refresh = function () {
      fetch(rows.dataset.refresh, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { rows.innerHTML = html; } })
        .catch(function () { /* offline for a moment: the next round tries again */ })
        .then(function () { window.setTimeout(refresh, REFRESH_MS); });
    };
    window.setTimeout(refresh, REFRESH_MS);
  }

  // --- a show's seat map ---
  var holder = document.getElementById("blockmap");
  var field = document.getElementById("picked-seats");
  if (!holder || !field) { return; }
  var seats = {};
  Array.prototype.forEach.call(holder.querySelectorAll("[data-seat]"), function (el) {
    seats[el.getAttribute("data-seat")] = el;
  });

  function statusOf(el) {
    for (var i = 0; i < STATUSES.length; i++) {
      if (el.classList.contains(STATUSES[i])) { return STATUSES[i]; }
    }
    return "free";
  }
  function pickable(el) {
    var status = statusOf(el);
    return status === "free" || status === "blocked";
  }
  function picked() {
    return field.value.split(/[\s,]+/).filter(function (s) { return s.length > 0; });
  }
  function describe(el) {
    var label = el.getAttribute("data-label") || el.getAttribute("data-seat");
    el.setAttribute("aria-label", label + ", " + WORDS[statusOf(el)]);
    var title = el.querySelector("title");
    if (title) { title.textContent = label + " · " + WORDS[statusOf(el)]; }
  }
  function mark(el) {
    var on = picked().indexOf(el.getAttribute("data-seat")) >= 0;
    el.classList.toggle("selected", on);
    el.setAttribute("role", "checkbox");
    el.setAttribute("aria-checked", on ? "true" : "false");
    el.setAttribute("tabindex", pickable(el) ? "0" : "-1");
    el.setAttribute("aria-disabled", pickable(el) ? "false" : "true");
    describe(el);
  }
  function toggle(el) {
    if (!pickable(el)) { return; }
    var id = el.getAttribute("data-seat");
    var list = picked();
    var at = list.indexOf(id);
    if (at >= 0) { list.splice(at, 1); } else { list.push(id); }
    field.value = list.join(" ");
    mark(el);
  }
  Object.keys(seats).forEach(function (id) { mark(seats[id]); });
  holder.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target.closest("[data-seat]") : null;
    if (el) { toggle(el); }
  });
  holder.addEventListener("keydown", function (event) {
    var el = event.target.closest ? event.target.closest("[data-seat]") : null;
    if (el && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      toggle(el);
    }
  });
  field.addEventListener("input", function () {
    Object.keys(seats).forEach(function (id) { mark(seats[id]); });
  });

  // The live map: each event names the seats whose status changed.
  if (!window.EventSource) { return; }
  var show = holder.getAttribute("data-show");
  var since = holder.getAttribute("data-position") || "";
  var source = new EventSource("/shows/" + show + "/seats/events?since=" + encodeURIComponent(since));
  function apply(event) {
    var data;
    try { data = JSON.parse(event.data); } catch (e) { return; }
    Object.keys(data.seats || {}).forEach(function (id) {
      var el = seats[id];
      if (!el) { return; }
      STATUSES.forEach(function (s) { el.classList.remove(s); });
      el.classList.add(data.seats[id]);
      mark(el);
    });
    holder.setAttribute("data-position", String(data.position));
  }
  source.addEventListener("snapshot", apply);
  source.addEventListener("seats", apply);
})();
