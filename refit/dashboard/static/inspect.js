// The price the verdict will give, shown as the inspector fills the form in. The prices are
// the catalog's, looked up by the server for this model; the server decides again on submit.
(function () {
  const form = document.getElementById("inspect-form");
  const out = document.getElementById("price-preview");
  const prices = JSON.parse(document.getElementById("catalog-prices").textContent);
  const quoted = Number(document.getElementById("quoted").dataset.usd);
  const field = (id) => document.getElementById(id);
  const usd = (n) => "$" + n.toFixed(2);

  function update() {
    const grade = field("grade").value;
    const storage = field("storage").value;
    const override = field("override") && field("override").value.trim();
    if (!field("activation_lock_off").checked) {
      out.textContent = "Unbuyable (activation lock on): the device goes home, no payout.";
      out.dataset.outcome = "unbuyable";
      return;
    }
    if (!field("powers_on").checked && grade !== "broken") {
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
  form.addEventListener("input", update);
  form.addEventListener("change", update);
  update();
})();
