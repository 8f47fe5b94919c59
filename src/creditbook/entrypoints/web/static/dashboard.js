// creditbook dashboard: progressive enhancement only; every page works without it.
"use strict";
(function () {
  // Live price preview on "Buy credits" (the server computes the real price).
  var buy = document.querySelector("form.buy");
  if (buy) {
    var cents = Math.round(parseFloat(buy.dataset.price) * 10000); // price in 1/10000ths
    var currency = buy.dataset.currency;
    var out = document.getElementById("price-output");
    var custom = document.getElementById("credits");
    var update = function () {
      var chosen = buy.querySelector("input[name=package]:checked");
      var credits = chosen && chosen.value !== "custom" ? parseInt(chosen.dataset.credits, 10)
        : parseInt(custom.value, 10);
      if (!credits || credits < 0) { out.textContent = "enter a number of credits"; return; }
      var minor = Math.round(credits * cents / 100); // integers: no float rounding on money
      var units = Math.floor(minor / 100), frac = minor % 100;
      out.textContent = units.toLocaleString("en-US") + "." + String(frac).padStart(2, "0") + " " + currency;
    };
    buy.addEventListener("change", update);
    custom.addEventListener("input", function () {
      document.getElementById("pk-custom").checked = true; update();
    });
    update();
  }

  // Confirm destructive forms (refunds).
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
    });
  });

  // Live progress of an enrichment job: poll the JSON status, reload when it settles.
  var job = document.getElementById("job");
  if (job && (job.dataset.status === "queued" || job.dataset.status === "running")) {
    var set = function (id, value) {
      var el = document.getElementById(id);
      if (el) { el.textContent = Number(value).toLocaleString("en-US"); }
    };
    var poll = function () {
      fetch(job.dataset.statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (s) {
          document.getElementById("job-status").textContent = s.status;
          document.getElementById("job-progress").value = s.percent;
          set("job-processed", s.processed); set("job-found", s.found);
          set("job-errors", s.errors); set("job-credits", s.credits_spent);
          if (s.status !== "queued" && s.status !== "running") { window.location.reload(); }
          else { window.setTimeout(poll, 700); }
        })
        .catch(function () { window.setTimeout(poll, 3000); });
    };
    window.setTimeout(poll, 500);
  }
})();
