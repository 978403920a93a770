// pqx dashboard: live updates (server-sent events), following a running command's output, and the
// re-drive buttons. Whatever a command printed is set as text (textContent), never as markup; the
// <main> fragments come rendered and escaped by the server.
"use strict";

const main = () => document.getElementById("main");

function flash(message, bad) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = bad ? "flash bad" : "flash";
  el.hidden = false;
}

function liveState(text, bad) {
  const el = document.getElementById("live-state");
  if (!el) return;
  el.textContent = text;
  el.className = bad ? "live-state bad" : "live-state on";
}

// Renders this page's <main> again now (after a button, or when a followed command ended).
async function refresh() {
  const answer = await fetch(location.href, { headers: { "X-Pqx-Fragment": "1" } });
  main().innerHTML = await answer.text();
  follow();
}

function watch() {
  const url = main().dataset.live;
  if (!url) return;
  const source = new EventSource(url);
  source.onopen = () => liveState("live", false);
  source.onerror = () => liveState("reconnecting…", true);
  source.addEventListener("main", (e) => {
    main().innerHTML = JSON.parse(e.data);
    liveState("live", false);
  });
}

function follow() {
  const section = document.querySelector("section[data-follow]");
  if (!section || section.dataset.following) return;
  section.dataset.following = "yes";
  const out = document.getElementById("live-output");
  const source = new EventSource(section.dataset.follow);
  liveState("following", false);
  source.addEventListener("line", (e) => {
    const line = JSON.parse(e.data);
    const span = document.createElement("span");
    span.className = line.stderr ? "line stderr" : "line";
    span.textContent = `${line.queue}| ${line.text}\n`;
    out.appendChild(span);
  });
  source.addEventListener("trouble", (e) => liveState("records away: " + e.data, true));
  source.addEventListener("end", (e) => {
    source.close();
    liveState("ended", false);
    flash(`The command ended with exit status ${e.data}.`, e.data !== "0");
    refresh();
  });
  source.onerror = () => liveState("reconnecting…", true);
}

async function redrive(button) {
  const body = button.dataset.redrive === "all"
    ? { all: true }
    : { message_id: button.dataset.messageId };
  button.disabled = true;
  try {
    const answer = await fetch("/api/dlq/redrive", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Pqx-Request": "1" },
      body: JSON.stringify(body),
    });
    const done = await answer.json();
    if (!answer.ok) {
      flash(done.error || `re-drive failed (${answer.status})`, true);
    } else {
      const lines = [...done.sent, ...done.left];
      flash(`Re-drove ${done.sent.length}, left ${done.left.length}. ${lines.join("; ")}`, done.left.length > 0);
    }
  } catch (e) {
    flash(`re-drive failed: ${e}`, true);
  }
  await refresh();
}

document.addEventListener("click", (e) => {
  const button = e.target.closest("button.redrive");
  if (button) redrive(button);
});

document.addEventListener("DOMContentLoaded", () => {
  watch();
  follow();
});
