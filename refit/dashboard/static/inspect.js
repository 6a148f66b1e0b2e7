// The inspection form in the browser: the price the verdict will give, shown as the inspector
// fills the form in (the catalog's prices, looked up by the server for this model), and the
// IMEI checked (15 digits, Luhn) before the form is sent. The server decides and checks again.
(function () {
  const form = document.getElementById("inspect-form");
  const out = document.getElementById("price-preview");
  const prices = JSON.parse(document.getElementById("catalog-prices").textContent);
  const quoted = Number(document.getElementById("quoted").dataset.usd);
  const field = (id) => document.getElementById(id);
  const usd = (n) => "$" + n.toFixed(2);
  const chosen = (name) => {
    const checked = form.querySelector('input[name="' + name + '"]:checked');
    return checked ? checked.value : "";
  };

  function update() {
    const grade = chosen("grade");
    const storage = field("storage").value;
    const override = field("override_price_usd") && field("override_price_usd").value.trim();
    delete out.dataset.outcome;
    if (chosen("activation_lock_off") === "no") {
      out.textContent = "Unbuyable (activation lock on): the device goes home, no payout.";
      out.dataset.outcome = "unbuyable";
      return;
    }
    if (!grade) {
      out.textContent = "Pick the grade and storage to see the price.";
      return;
    }
    if (chosen("powers_on") === "no" && grade !== "broken") {
      out.textContent = "Unbuyable (does not power on, not graded broken): the device goes home.";
      out.dataset.outcome = "unbuyable";
      return;
    }
    const found = override ? Number(override) : Number((prices[storage] || {})[grade]);
    if (!Number.isFinite(found)) {
      out.textContent = "No catalog price for this grade and storage.";
      return;
    }
    if (found >= quoted) {
      out.textContent = "Price: " + usd(quoted) + ", as quoted (catalog " + usd(found) + "): on to payout.";
      out.dataset.outcome = "as_quoted";
    } else {
      out.textContent = "Price: " + usd(found) + ", a revised offer below the quote of " + usd(quoted) + ": the seller answers.";
      out.dataset.outcome = "revised_offer";
    }
  }

  // The same rule as the server's (refit/inspection/service.py identity_problem).
  function luhn(digits) {
    let total = 0;
    for (let i = 0; i < digits.length; i++) {
      let value = Number(digits[digits.length - 1 - i]);
      if (i % 2 === 1) {
        value *= 2;
        if (value > 9) value -= 9;
      }
      total += value;
    }
    return total % 10 === 0;
  }

  function imeiProblem() {
    const digits = field("imei").value.replace(/[\s-]/g, "");
    if (!digits) return "";
    if (!/^[0-9]{15}$/.test(digits)) {
      return "The IMEI must be 15 digits (this has " + digits.length + " characters)";
    }
    return luhn(digits) ? "" : "The IMEI must be 15 digits with a valid check digit (Luhn)";
  }

  function show(name, message) {
    const input = field(name);
    const slot = field(name + "-error");
    slot.textContent = message;
    slot.hidden = !message;
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  form.addEventListener("submit", function (event) {
    const problem = imeiProblem();
    show("imei", problem);
    if (problem) {
      event.preventDefault();
      field("imei").focus();
    }
  });
  // A problem shown goes away as soon as the IMEI is right.
  field("imei").addEventListener("input", function () {
    if (field("imei").getAttribute("aria-invalid") === "true" && !imeiProblem()) show("imei", "");
  });
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
  // A refused submit: the first field with a problem has the focus (autofocus, kept here for
  // browsers that skip it on a page shown again).
  const first = form.querySelector("[autofocus]");
  if (first && document.activeElement !== first) first.focus();
})();
