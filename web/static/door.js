// The door scanner. Each scan (camera or typed) gets a scan id and goes into a queue kept in
// localStorage; the queue is sent in order to /door/shows/{id}/scan. An answer (admitted,
// already in, void, not a ticket ...) takes the scan off the queue and is shown big; no answer
// (the network dropped, the server was busy) leaves it queued and it is sent again later
// with the SAME scan id, so the server replays its first answer instead of deciding twice.
(function () {
  "use strict";

  var root = document.getElementById("door");
  if (!root) { return; }
  var SCAN_URL = root.getAttribute("data-scan-url");
  var SHOW = root.getAttribute("data-show");
  var CSRF = root.getAttribute("data-csrf");
  var QUEUE_KEY = "ticketblitz.door.queue." + SHOW;
  var GATE_KEY = "ticketblitz.door.gate";
  var SAME_CODE_MS = 4000; // the camera sees a code many times a second: once is enough
  var MAX_BACKOFF_MS = 10000;
  var CLASSES = {
    "admitted": "verdict-admitted",
    "already-admitted": "verdict-already",
    "void": "verdict-void"
  };

  var verdict = document.getElementById("verdict");
  var word = document.getElementById("verdict-word");
  var seat = document.getElementById("verdict-seat");
  var detail = document.getElementById("verdict-detail");
  var queueState = document.getElementById("queue-state");
  var history = document.getElementById("history");
  var gate = document.getElementById("gate");
  var manual = document.getElementById("manual");
  var secretField = document.getElementById("manual-secret");

  gate.value = window.localStorage.getItem(GATE_KEY) || gate.value;
  gate.addEventListener("change", function () {
    window.localStorage.setItem(GATE_KEY, gate.value.trim());
  });

  function newScanId() {
    if (window.crypto && window.crypto.randomUUID) { return window.crypto.randomUUID(); }
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return ("0" + b.toString(16)).slice(-2);
    }).join("");
  }

  // --- the queue (survives a reload or a dead battery swap) ---
  function load() {
    try { return JSON.parse(window.localStorage.getItem(QUEUE_KEY) || "[]"); } catch (e) { return []; }
  }
  function save(queue) { window.localStorage.setItem(QUEUE_KEY, JSON.stringify(queue)); }
  function showQueue(queue, waiting) {
    if (queue.length === 0) { queueState.textContent = ""; return; }
    queueState.textContent = waiting
      ? queue.length + " scan(s) waiting for the network; retrying…"
      : "Checking " + queue.length + " scan(s)…";
  }

  var sending = false;
  var backoff = 500;
  var timer = null;

  function enqueue(secret) {
    var queue = load();
    queue.push({ scan_id: newScanId(), secret: secret, gate: gate.value.trim() || "Main" });
    save(queue);
    showQueue(queue, false);
    pump();
  }

  function later() {
    if (timer !== null) { return; }
    timer = window.setTimeout(function () { timer = null; pump(); }, backoff);
    backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
  }

  function pump() {
    if (sending) { return; }
    var queue = load();
    if (queue.length === 0) { showQueue(queue, false); return; }
    sending = true;
    var scan = queue[0];
    var form = new URLSearchParams();
    form.set("csrf_token", CSRF);
    form.set("secret", scan.secret);
    form.set("gate", scan.gate);
    form.set("scan_id", scan.scan_id);
    fetch(SCAN_URL, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      body: form
    }).then(function (response) {
      return response.json().then(function (body) {
        return { status: response.status, body: body };
      }, function () { return { status: response.status, body: null }; });
    }).then(function (answer) {
      sending = false;
      if (answer.body && answer.status < 500 && answer.status !== 429) {
        var rest = load().filter(function (s) { return s.scan_id !== scan.scan_id; });
        save(rest);
        backoff = 500;
        show(answer.body);
        if (answer.status === 401 || answer.status === 403) { showQueue(rest, false); return; }
        pump();
      } else {
        showQueue(load(), true);
        later();
      }
    }, function () {
      sending = false; // no answer at all: the same scan id goes again later
      showQueue(load(), true);
      later();
    });
  }

  function show(answer) {
    verdict.className = "verdict " + (CLASSES[answer.result] || "verdict-invalid");
    word.textContent = answer.verdict || "";
    seat.textContent = answer.seat || "";
    detail.textContent = answer.detail || "";
    var item = document.createElement("li");
    item.className = CLASSES[answer.result] || "verdict-invalid";
    item.textContent = (answer.verdict || "") + (answer.seat ? " · " + answer.seat : "");
    history.insertBefore(item, history.firstChild);
    while (history.children.length > 20) { history.removeChild(history.lastChild); }
    if (navigator.vibrate) { navigator.vibrate(answer.result === "admitted" ? 80 : [200, 100, 200]); }
  }

  manual.addEventListener("submit", function (event) {
    event.preventDefault();
    var secret = secretField.value.trim();
    if (secret) { enqueue(secret); }
    secretField.value = "";
    secretField.focus();
  });
  window.addEventListener("online", function () { backoff = 500; pump(); });
  pump(); // scans queued before a reload

  // --- the camera: BarcodeDetector where the browser has it, else the vendored jsQR ---
  var video = document.getElementById("camera");
  var canvas = document.getElementById("frame");
  var toggle = document.getElementById("camera-toggle");
  var note = document.getElementById("camera-note");
  var stream = null;
  var lastCode = "";
  var lastAt = 0;
  var decode = null;

  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    toggle.hidden = true;
    note.textContent = "No camera here (it needs HTTPS): type the ticket code below.";
  }

  function seen(code) {
    var now = Date.now();
    if (code === lastCode && now - lastAt < SAME_CODE_MS) { return; }
    lastCode = code;
    lastAt = now;
    enqueue(code);
  }

  function decoder() {
    if ("BarcodeDetector" in window) {
      var detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      return Promise.resolve(function () {
        return detector.detect(video).then(function (codes) {
          return codes.length ? codes[0].rawValue : null;
        });
      });
    }
    return new Promise(function (resolve, reject) {
      var script = document.createElement("script");
      script.src = "/static/vendor/jsQR-1.4.0.js";
      script.onload = function () {
        var context = canvas.getContext("2d", { willReadFrequently: true });
        resolve(function () {
          var w = video.videoWidth, h = video.videoHeight;
          if (!w || !h) { return Promise.resolve(null); }
          canvas.width = w; canvas.height = h;
          context.drawImage(video, 0, 0, w, h);
          var found = window.jsQR(context.getImageData(0, 0, w, h).data, w, h, {
            inversionAttempts: "dontInvert"
          });
          return Promise.resolve(found ? found.data : null);
        });
      };
      script.onerror = reject;
      document.head.appendChild(script);
    });
  }

  function tick() {
    if (!stream) { return; }
    decode().then(function (code) {
      if (code) { seen(code.trim()); }
    }, function () { /* a frame that could not be read */ }).then(function () {
      window.setTimeout(tick, 200);
    });
  }

  function stop() {
    if (stream) { stream.getTracks().forEach(function (t) { t.stop(); }); }
    stream = null;
    video.hidden = true;
    toggle.textContent = "Start the camera";
  }

  toggle.addEventListener("click", function () {
    if (stream) { stop(); return; }
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false })
      .then(function (media) {
        stream = media;
        video.srcObject = media;
        video.hidden = false;
        toggle.textContent = "Stop the camera";
        note.textContent = "Point the camera at the ticket's QR code.";
        return video.play().then(decoder).then(function (d) { decode = d; tick(); });
      })
      .catch(function () {
        stop();
        note.textContent = "The camera could not be started: type the ticket code below.";
      });
  });
})();
