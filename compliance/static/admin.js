// Offboard admin pages: the little JavaScript they use. Pages work without it; it adds
// confirmation prompts for destructive buttons and live progress where a page asks for it.
"use strict";

document.addEventListener("submit", (event) => {
  const question = event.target.dataset && event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});

// <section data-live="URL" data-live-every="2000">: fetch URL (JSON) and hand it to the
// page's renderer, registered as window.offboardLive[name], until it says it is finished.
window.offboardLive = window.offboardLive || {};
function follow(element) {
  const render = window.offboardLive[element.dataset.liveRender];
  const every = Number(element.dataset.liveEvery || 2000);
  if (!render) return;
  const tick = async () => {
    try {
      const answer = await fetch(element.dataset.live, {headers: {"Accept": "application/json"},
                                                       credentials: "same-origin"});
      if (answer.ok && render(element, await answer.json())) return;  // finished: stop polling
    } catch (error) { /* a dropped poll is retried on the next tick */ }
    window.setTimeout(tick, every);
  };
  window.setTimeout(tick, every);
}
window.addEventListener("DOMContentLoaded", () => document.querySelectorAll("[data-live]").forEach(follow));
