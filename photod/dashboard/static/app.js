// photod's dashboard: refresh the page when the daemon logs something new (polled
// every 5 s, only while a page is open), and drive the library's restore form.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  let token = null;
  let busy = false; // a choice in progress on the library page: do not reload under it

  async function poll() {
    try {
      const r = await fetch("/api/changes", { credentials: "same-origin" });
      if (r.ok) {
        const t = (await r.json()).token;
        if (token !== null && t !== token && !busy) { location.reload(); return; }
        token = t;
      }
    } catch (e) { /* the daemon is restarting: try again later */ }
    setTimeout(poll, 5000);
  }
  poll();

  const form = document.getElementById("restore");
  if (!form) return;
  const boxes = () => Array.from(form.querySelectorAll('input[type="checkbox"]'));
  const count = document.getElementById("count");
  const progress = document.getElementById("progress");
  const update = () => {
    const n = boxes().filter((b) => b.checked).length;
    count.textContent = String(n);
    busy = n > 0 || document.getElementById("dest").value !== "";
  };
  form.addEventListener("change", update);
  form.addEventListener("input", update);
  document.getElementById("all").addEventListener("click", () => {
    boxes().forEach((b) => { b.checked = true; });
    update();
  });
  form.querySelectorAll("button.day").forEach((btn) => btn.addEventListener("click", () => {
    boxes().filter((b) => b.dataset.day === btn.dataset.day).forEach((b) => { b.checked = true; });
    update();
  }));

  // A restore's progress until it ends; ``last``: its last view.  No answer (the daemon
  // stopped) or a 404 (a daemon started since knows no such restore): it did not finish.
  async function follow(id, last) {
    let job = null;
    try {
      const r = await fetch("/restore/" + id, { credentials: "same-origin" });
      if (r.ok) job = await r.json();
    } catch (e) { /* the daemon stopped */ }
    if (!job || !job.state) {
      job = Object.assign({}, last, { state: "stopped",
        message: "the daemon stopped: this restore did not finish (" + last.restored + " of " +
          last.files + " restored)" });
    }
    const pct = job.total ? Math.floor((100 * job.done) / job.total) : 0;
    if (job.state === "running") {
      progress.textContent = "restoring " + job.files + " file(s) into " + job.dest + ": " + pct + "%";
      setTimeout(() => follow(id, job), 500);
      return;
    }
    busy = false;
    progress.dataset.state = job.state;
    if (job.state === "stopped") { progress.textContent = job.message; return; }
    progress.textContent = job.message ? "restore failed: " + job.message :
      "restored " + job.restored + " file(s) into " + job.dest + ", skipped " + job.skipped +
      " already there, failed " + job.failed_count +
      job.failed.map((f) => "; " + f[0] + ": " + f[1]).join("") +
      (job.failed_count > job.failed.length ?
        "; and " + (job.failed_count - job.failed.length) + " more" : "");
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const chosen = boxes().filter((b) => b.checked).map((b) => b.value);
    const body = new URLSearchParams({ dest: document.getElementById("dest").value, assets: chosen.join(",") });
    progress.dataset.state = "running";
    progress.textContent = "starting the restore...";
    let r, job;
    try {
      r = await fetch("/restore", {
        method: "POST", body, credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
      });
      job = await r.json();
    } catch (e) {
      progress.dataset.state = "failed";
      progress.textContent = "restore failed: the daemon did not answer (" + e + ")";
      return;
    }
    if (!r.ok) { progress.dataset.state = "failed"; progress.textContent = job.error; return; }
    follow(job.id, job);
  });
})();
