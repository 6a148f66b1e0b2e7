// Pages that update themselves (refit/dashboard/live.py): every second the page asks its own
// URL again with the stamp of what it shows. 204: nothing changed. 200: the page anew, whose
// [data-live] regions replace ours, by id; never one holding what the operator is doing (the
// focused field, a typed value, chosen photos), so a refresh never loses work.
(function () {
  "use strict";
  const root = document.querySelector("[data-live-stamp]");
  if (!root || !window.fetch) return;
  let stamp = root.dataset.liveStamp;
  const every = 1000;

  function busy(region) {
    if (region.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    for (const field of region.querySelectorAll("input, textarea, select")) {
      if (field.type === "file" && field.files && field.files.length) return true;
      if ((field.type === "text" || field.type === "search" || field.tagName === "TEXTAREA")
          && field.value !== field.defaultValue) return true;
    }
    return false;
  }

  // Whether every changed region was swapped (one held back is tried again next time).
  function swap(html) {
    const fresh = new DOMParser().parseFromString(html, "text/html");
    let all = true;
    for (const region of document.querySelectorAll("[data-live][id]")) {
      const next = fresh.getElementById(region.id);
      if (!next || next.innerHTML === region.innerHTML) continue;
      if (busy(region)) {
        all = false;
        continue;
      }
      region.innerHTML = next.innerHTML;
    }
    return all;
  }

  async function look() {
    if (document.hidden) return;
    try {
      const response = await fetch(window.location.href, {
        headers: { "X-Live-Stamp": stamp },
        credentials: "same-origin",
        cache: "no-store",
        redirect: "manual",
      });
      if (response.status === 200) {
        if (swap(await response.text())) {
          stamp = response.headers.get("X-Live-Stamp") || stamp;
        }
        document.documentElement.dataset.liveAt = String(Date.now());
      }
    } catch (e) {
      // Offline for a moment: the next look tries again.
    }
  }

  async function loop() {
    await look();
    window.setTimeout(loop, every);
  }
  window.setTimeout(loop, every);
})();
