// The waiting room's page: ask again every few seconds. The server says where the fan stands
// and, once they are let in, sends them on to the show page with its hold forms.
(function () {
  "use strict";
  var room = document.getElementById("waiting-room");
  if (!room) { return; }
  var seconds = parseInt(room.getAttribute("data-refresh"), 10) || 5;
  window.setTimeout(function () {
    window.location.replace(window.location.href);
  }, seconds * 1000);
})();
