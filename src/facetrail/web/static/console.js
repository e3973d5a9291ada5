// The console's one script: a folder ingestion's page polls its progress and reloads itself when the ingestion
// ends, to show the report (without scripts the page has a refresh link); a search's results are filtered by
// source and collection date (without scripts the filters stay hidden and every result shows).
"use strict";
(function () {
  const form = document.getElementById("result-filters");
  if (!form) return;
  const source = document.getElementById("filter-source");
  const from = document.getElementById("filter-from");
  const until = document.getElementById("filter-to");
  const count = document.getElementById("filter-count");
  const hits = [...document.querySelectorAll("#results > li")];
  function apply() {
    let shown = 0;
    for (const hit of hits) {
      const date = hit.dataset.date;
      hit.hidden = (source.value && hit.dataset.source !== source.value) || (from.value && date < from.value)
        || (until.value && date > until.value);
      if (!hit.hidden) shown += 1;
    }
    count.textContent = shown + " of " + hits.length + " result(s) shown.";
  }
  form.addEventListener("input", apply);
  form.addEventListener("submit", (event) => event.preventDefault());
  form.hidden = false;
})();
(function () {
  const job = document.getElementById("job");
  if (!job || !job.dataset.progress) return;
  const bar = document.getElementById("job-progress");
  const state = document.getElementById("job-state");
  async function poll() {
    const answer = await fetch(job.dataset.progress, {credentials: "same-origin", cache: "no-store"});
    if (!answer.ok) {
      state.textContent = "The progress could not be read (" + answer.status + "): reload the page.";
      return;
    }
    const p = await answer.json();
    bar.max = Math.max(p.total, 1);
    bar.value = p.done;
    bar.textContent = p.done + " of " + p.total;
    if (p.running) {
      state.textContent = "Running: " + p.done + " of " + (p.total || "?") + " file(s) done.";
      setTimeout(poll, 500);
    } else {
      location.reload();  // the page now shows how it ended, and the report
    }
  }
  if (state.textContent.startsWith("Running")) poll();
})();
