// The rights portal works with forms alone; this only smooths it: it shows the opt-out consent only when
// opting out, offers to copy the private link, and reloads a waiting status page when its status changes.
"use strict";

function showKindFields(form) {
  const chosen = form.querySelector("input[name=kind]:checked");
  for (const block of form.querySelectorAll("[data-kind]")) {
    block.hidden = !chosen || chosen.value !== block.dataset.kind;
  }
}

function watchStatus(main) {
  // Poll gently: a person may leave the page open for days while the data protection officer decides.
  const url = main.dataset.poll;
  const shown = main.dataset.status;
  const check = async () => {
    try {
      const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
      if (response.ok && (await response.json()).status !== shown) {
        window.location.reload();
        return;
      }
    } catch (err) {
      // Offline for a moment: try again later.
    }
    window.setTimeout(check, 30000);
  };
  window.setTimeout(check, 30000);
}

document.addEventListener("DOMContentLoaded", () => {
  const intake = document.getElementById("intake");
  if (intake) {
    showKindFields(intake);
    intake.addEventListener("change", () => showKindFields(intake));
  }
  for (const button of document.querySelectorAll("button[data-copy]")) {
    if (!navigator.clipboard) continue;
    button.hidden = false;
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "Copied";
    });
  }
  // Only set while the request waits on us, not on the person's own steps (their forms reload the page).
  const main = document.querySelector("main[data-poll]");
  if (main) watchStatus(main);
});
