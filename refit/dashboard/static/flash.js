// After an action the page says what was done (?done=...). Drop the parameter from the
// address, so a reload later does not announce it again.
(function () {
  const url = new URL(window.location.href);
  if (url.searchParams.has("done")) {
    url.searchParams.delete("done");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
})();
// A refused form shown again: the first field with a problem has the focus (autofocus, kept
// here for browsers that skip it on a page shown again).
(function () {
  const first = document.querySelector("form [autofocus]");
  if (first && document.activeElement !== first) first.focus();
})();
