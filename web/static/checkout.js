// Checkout: the hold's countdown, and the card form through Stripe.js Elements (the
// emulator's stand-in in a demo or test stack): the card becomes a PaymentMethod at Stripe
// (confirmCardSetup), and only its id is posted to us.
(function () {
  "use strict";
  var countdown = document.getElementById("countdown");
  var payButton = document.getElementById("pay-button");
  if (countdown) {
    var ends = Date.parse(countdown.getAttribute("data-expires"));
    var tick = function () {
      var left = Math.max(0, Math.floor((ends - Date.now()) / 1000));
      var minutes = Math.floor(left / 60), seconds = left % 60;
      countdown.textContent = minutes + ":" + (seconds < 10 ? "0" : "") + seconds;
      if (left <= 0) {
        document.getElementById("hold-ended").classList.remove("hidden");
        if (payButton) { payButton.disabled = true; }
        return;
      }
      window.setTimeout(tick, 1000);
    };
    tick();
  }

  var form = document.getElementById("pay-form");
  if (!form || typeof window.Stripe !== "function") { return; }
  var errors = document.getElementById("card-errors");
  var stripe = window.Stripe(form.getAttribute("data-publishable-key"));
  var card = stripe.elements().create("card");
  card.mount("#card-element");

  function fail(text) {
    errors.textContent = text;
    errors.classList.remove("hidden");
    payButton.disabled = false;
    payButton.removeAttribute("aria-busy");
  }

  form.addEventListener("submit", function (event) {
    if (document.getElementById("payment-method").value) { return; }
    event.preventDefault();
    errors.classList.add("hidden");
    payButton.disabled = true;
    payButton.setAttribute("aria-busy", "true");
    stripe.confirmCardSetup(form.getAttribute("data-client-secret"), {
      payment_method: {card: card}
    }).then(function (result) {
      if (result.error) {
        var message = (result.error && result.error.message) || "This card could not be used.";
        fail(message + " Please check the card or try another one.");
        return;
      }
      var method = result.setupIntent && result.setupIntent.payment_method;
      if (!method) { fail("This card could not be used. Please try another one."); return; }
      document.getElementById("payment-method").value = method;
      form.submit();
    }, function () {
      fail("We could not reach the card processor. Please try again.");
    });
  });
})();
