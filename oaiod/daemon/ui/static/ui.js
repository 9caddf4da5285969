// oaiod status page: live sections by server-sent events. The server renders every section (escaped HTML);
// this script only swaps a changed one in. Without it the page works and is reloaded by hand.
"use strict";
(function () {
  if (!window.EventSource) { return; }
  var indicator = document.getElementById("live-indicator");
  var sections = document.querySelectorAll("[data-live]");
  if (!sections.length) { return; }
  function say(text) { if (indicator) { indicator.hidden = false; indicator.textContent = text; } }
  function busy(element) {  // do not replace a form the user is typing in
    var active = document.activeElement;
    return active && element.contains(active) && active.tagName === "INPUT" && active.type === "text";
  }
  var events = new EventSource("/events");
  events.onopen = function () { say("Live"); };
  events.onerror = function () { say("Reconnecting…"); };
  events.onmessage = function (message) {
    var changed;
    try { changed = JSON.parse(message.data); } catch (e) { return; }
    for (var i = 0; i < sections.length; i++) {
      var element = sections[i];
      var html = changed[element.getAttribute("data-live")];
      if (typeof html === "string" && !busy(element)) { element.innerHTML = html; }
    }
    document.body.setAttribute("data-updates", String(Number(document.body.getAttribute("data-updates") || 0) + 1));
  };
})();
