// The rights portal works with forms alone; this only smooths it: it shows the opt-out consent only when
// opting out, offers to copy the private link, reloads a waiting status page when its status changes, and
// offers the live check through the camera (the upload form stays for those without one).
"use strict";

const FRAMES_PER_STEP = 2;
const SETTLE_MS = 2500; // time to turn the head after each prompt
const BETWEEN_FRAMES_MS = 350;

const pause = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

function grab(video) {
  // The frame as the camera sees it (not mirrored), as a JPEG.
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
}

async function cameraCheck(form, box) {
  const video = box.querySelector("#camera-view");
  const prompt = box.querySelector("#camera-prompt");
  const steps = [...document.querySelectorAll("#challenge li")];
  const stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: 640 } });
  video.srcObject = stream;
  await video.play();
  const body = new FormData();
  for (const name of ["csrf", "token", "nonce"]) body.append(name, form.elements[name].value);
  const start = performance.now();
  try {
    for (const [index, step] of steps.entries()) {
      steps.forEach((item) => item.classList.toggle("now", item === step));
      prompt.textContent = `Step ${index + 1} of ${steps.length}: ${step.textContent}`;
      await pause(SETTLE_MS);
      for (let n = 0; n < FRAMES_PER_STEP; n += 1) {
        body.append("frames", await grab(video), `step${index}-${n}.jpg`);
        body.append("steps", String(index));
        body.append("times", String(Math.round(performance.now() - start)));
        await pause(BETWEEN_FRAMES_MS);
      }
    }
  } finally {
    stream.getTracks().forEach((track) => track.stop());
  }
  prompt.textContent = "Sending…";
  const response = await fetch(form.action, { method: "POST", body, credentials: "same-origin" });
  window.location.assign(response.url);
}

function offerCamera(form) {
  const box = document.getElementById("camera");
  if (!box || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
  box.hidden = false;
  const button = box.querySelector("#camera-start");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await cameraCheck(form, box);
    } catch (err) {
      box.querySelector("#camera-prompt").textContent =
        "The camera could not be used. Send one picture for each step with the form below instead.";
      button.disabled = false;
    }
  });
}

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
  const capture = document.getElementById("capture-form");
  if (capture) offerCamera(capture);
  // Only set while the request waits on us, not on the person's own steps (their forms reload the page).
  const main = document.querySelector("main[data-poll]");
  if (main) watchStatus(main);
});
