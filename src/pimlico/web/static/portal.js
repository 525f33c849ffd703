// Progressive enhancement only: every page works without this script.
// It tells the server the viewer's time zone (a cookie), so times are shown in it; the first
// page seen in a new zone is drawn again once.
(function () {
  "use strict";
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone) return;
  var current = document.cookie.split("; ").filter(function (c) {
    return c.indexOf("pimlico_tz=") === 0;
  })[0];
  if (current === "pimlico_tz=" + zone) return;
  document.cookie = "pimlico_tz=" + zone + "; path=/; max-age=31536000; samesite=lax";
  // Draw the page again in the new zone, once, and never an answer to a form post.
  if (document.body.dataset.method === "GET" && !sessionStorage.getItem("pimlico_tz_reloaded")) {
    sessionStorage.setItem("pimlico_tz_reloaded", "1");
    window.location.reload();
  }
})();
