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

// --- Request page: the export's per-dataset progress, and the once-shown link -------------
// Each poll answers {request_status, request_status_label, export: {status, error, tasks}, finished};
// the rows are rebuilt from it with the markup the server renders (text only, never HTML).
function make(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

function statusBadge(value, words) {
  const text = words || value.replace(/_/g, " ");
  return make("span", "status status-" + value, text.charAt(0).toUpperCase() + text.slice(1));
}

function taskRow(task) {
  const row = make("tr");
  row.dataset.task = task.id;
  const known = task.percent !== null && task.percent !== undefined;
  const bar = make("div", "bar" + (task.status === "done" ? " complete" : task.status === "failed" ? " failed" : ""));
  bar.setAttribute("role", "progressbar");
  bar.setAttribute("aria-label", task.source + " " + task.dataset);
  bar.setAttribute("aria-valuemin", "0");
  bar.setAttribute("aria-valuemax", "100");
  if (known) bar.setAttribute("aria-valuenow", String(task.percent));
  const fill = make("span");
  fill.style.width = (known ? task.percent : 0) + "%";
  bar.appendChild(fill);
  const progress = make("div", "progress");
  progress.append(bar, make("span", "muted", known ? task.percent + " %" : "total unknown"));
  const rows = task.rows.toLocaleString("en") +
    (task.total_rows !== null && task.total_rows !== undefined ? " of " + task.total_rows.toLocaleString("en") : "");
  const cells = [make("td", "", task.source), make("td", "", task.dataset), make("td"),
                 make("td", "num", rows), make("td", "num", String(task.attempts)), make("td"),
                 make("td", "", task.error || "—")];
  ["Source", "Dataset", "Progress", "Rows", "Attempts", "Status", "Error"].forEach((name, index) => {
    cells[index].dataset.label = name;
  });
  cells[2].appendChild(progress);
  cells[5].appendChild(statusBadge(task.status));
  row.append(...cells);
  return row;
}

window.offboardLive.exportProgress = (section, answer) => {
  const exported = answer.export;
  if (!exported) return answer.finished;
  const body = section.querySelector("[data-tasks]");
  if (body && exported.tasks.length) body.replaceChildren(...exported.tasks.map(taskRow));
  const exportStatus = section.querySelector("[data-export-status]");
  if (exportStatus) exportStatus.replaceChildren(statusBadge(exported.status));
  const error = section.querySelector("[data-export-error]");
  if (error) { error.textContent = exported.error || ""; error.hidden = !exported.error; }
  const requestStatus = document.querySelector("[data-request-status]");
  if (requestStatus) requestStatus.replaceChildren(statusBadge(answer.request_status, answer.request_status_label));
  if (answer.finished) {
    const note = section.querySelector("[data-live-announce]");
    if (note) {
      const done = exported.status === "ready";
      note.replaceChildren(make("strong", "", done
        ? "The export is ready: every dataset is in the bundle. "
        : "The export failed: " + (exported.error || "see the rows above") + ". "));
      const again = make("a", "", done ? "Reload the page to see the bundle and issue a link."
                                       : "Reload the page to retry the failed parts.");
      again.href = window.location.pathname + "#export";
      note.appendChild(again);
    }
  }
  return answer.finished;
};

document.addEventListener("click", (event) => {
  const button = event.target.closest && event.target.closest("[data-copy]");
  if (!button) return;
  const field = document.getElementById(button.dataset.copy);
  field.select();
  navigator.clipboard.writeText(field.value).then(() => { button.textContent = "Copied"; },
                                                  () => { button.textContent = "Select and copy"; });
});
document.addEventListener("focusin", (event) => {
  if (event.target.matches && event.target.matches("[data-select-on-focus]")) event.target.select();
});
window.addEventListener("DOMContentLoaded", () => {
  if (navigator.clipboard) document.querySelectorAll("[data-copy]").forEach((button) => { button.hidden = false; });
});
