// The console's one script: a folder ingestion's page polls its progress and reloads itself when the ingestion
// ends, to show the report. Without scripts the page has a refresh link.
"use strict";
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
