// Every page: each <time datetime> (written by the `when` template filter, its text the UTC
// form) is shown in the reader's local time; the UTC text stays as its tooltip.
// A static file, because the Content-Security-Policy allows scripts only from 'self'.
(function () {
  var local = new Intl.DateTimeFormat(undefined, {day: "numeric", month: "short", year: "numeric",
                                                  hour: "2-digit", minute: "2-digit", second: "2-digit"});
  function localTimes() {
    document.querySelectorAll("time[datetime]:not([data-local])").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (!isNaN(d)) { t.title = t.textContent; t.textContent = local.format(d); t.dataset.local = "yes"; }
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", localTimes); }
  else { localTimes(); }
})();
