// The show page's seat map: pick seats by click, Enter or Space (at most 10), and follow the
// seat changes live (Server-Sent Events from /shows/{id}/seats/events, resuming from the
// last position seen). Seats taken by others while picked stay listed, marked as taken.
(function () {
  "use strict";
  var MAX = 10;
  var form = document.getElementById("seat-form");
  var map = document.querySelector("svg.seatmap");
  if (!map) { return; }
  var picked = [];
  var field = document.getElementById("picked-seats");
  var summary = document.getElementById("selection");
  var notice = document.getElementById("live-notice");

  function seatEl(id) {
    return map.querySelector('[data-seat="' + (window.CSS && CSS.escape ? CSS.escape(id) : id) + '"]');
  }

  function render() {
    if (!form) { return; }
    field.value = picked.join(",");
    if (!picked.length) {
      summary.textContent = "No seats picked yet.";
      return;
    }
    var names = picked.map(function (id) {
      var el = seatEl(id);
      var text = el ? el.getAttribute("data-label") + " (" + el.getAttribute("data-price") + ")" : id;
      if (el && !el.classList.contains("free") && !el.classList.contains("selected")) {
        text += " — just taken";
      }
      return text;
    });
    summary.textContent = picked.length + (picked.length === 1 ? " seat: " : " seats: ") + names.join("; ");
  }

  function toggle(el) {
    if (!form) { return; }
    var id = el.getAttribute("data-seat");
    var at = picked.indexOf(id);
    if (at >= 0) {
      picked.splice(at, 1);
      el.classList.remove("selected");
      el.classList.add("free");
      el.setAttribute("aria-checked", "false");
    } else if (el.classList.contains("free")) {
      if (picked.length >= MAX) {
        summary.textContent = "You can pick up to " + MAX + " seats at once.";
        return;
      }
      picked.push(id);
      el.classList.remove("free");
      el.classList.add("selected");
      el.setAttribute("aria-checked", "true");
    }
    render();
  }

  map.addEventListener("click", function (event) {
    var el = event.target.closest ? event.target.closest("[data-seat]") : null;
    if (el) { toggle(el); }
  });
  map.addEventListener("keydown", function (event) {
    var el = event.target.closest ? event.target.closest("[data-seat]") : null;
    if (el && (event.key === "Enter" || event.key === " " || event.key === "Spacebar")) {
      event.preventDefault();
      toggle(el);
    }
  });

  function setStatus(id, status) {
    var el = seatEl(id);
    if (!el) { return; }
    var mine = picked.indexOf(id) >= 0;
    ["free", "held", "sold", "blocked", "selected", "taken"].forEach(function (c) { el.classList.remove(c); });
    if (mine && status === "free") {
      el.classList.add("selected");
    } else {
      el.classList.add(status);
      if (mine) {
        el.classList.add("taken");
        notice.textContent = el.getAttribute("data-label") + " was just taken by someone else.";
        notice.classList.remove("hidden");
      }
    }
    var selectable = status === "free";
    el.setAttribute("tabindex", selectable ? "0" : "-1");
    el.setAttribute("aria-disabled", selectable ? "false" : "true");
    el.setAttribute("data-status", status);
    var words = {free: "available", held: "on hold", sold: "sold", blocked: "not on sale"};
    el.setAttribute("aria-label", el.getAttribute("data-label") + ", " +
      el.getAttribute("data-price") + ", " + (words[status] || status));
    var title = el.querySelector("title");
    if (title) {
      title.textContent = el.getAttribute("data-label") + " · " + el.getAttribute("data-price") +
        " · " + (words[status] || status);
    }
  }

  function apply(data) {
    Object.keys(data.seats || {}).forEach(function (id) { setStatus(id, data.seats[id]); });
    Object.keys(data.available || {}).forEach(function (section) {
      var label = map.querySelector('[data-available-for="' + section + '"]');
      if (label) { label.textContent = "Standing · " + data.available[section] + " left"; }
    });
    map.setAttribute("data-position", String(data.position));
    render();
  }

  var show = map.closest("main").querySelector("[data-show]");
  var showId = show ? show.getAttribute("data-show") : null;
  if (!showId) {
    var m = window.location.pathname.match(/^\/shows\/([0-9a-f-]+)/);
    showId = m ? m[1] : null;
  }
  if (showId && window.EventSource) {
    var since = map.getAttribute("data-position") || "0";
    var source = new EventSource("/shows/" + showId + "/seats/events?since=" + encodeURIComponent(since));
    var handle = function (event) {
      try { apply(JSON.parse(event.data)); } catch (e) { /* a malformed event changes nothing */ }
    };
    source.addEventListener("seats", handle);
    source.addEventListener("snapshot", handle);
    map.setAttribute("data-live", "connecting");
    source.addEventListener("open", function () { map.setAttribute("data-live", "open"); });
  }
  render();
})();
