// One post: its status, content, attempts, Reddit link once published, why it failed and the
// fix; the changes its status allows. While Thotto checks whether an attempt reached Reddit
// (status publishing, or a 409 with Retry-After), it says so instead of offering changes, and
// looks again until it knows.
"use strict";

(() => {
  const article = document.getElementById("post");
  if (!article) return;
  const id = article.dataset.postId;
  const $ = (name) => document.getElementById(name);
  let post = null;
  let timer = null;

  function facts(p) {
    const E = Posts.element;
    const list = $("post-facts");
    list.replaceChildren();
    const add = (term, value) => list.append(E("dt", {text: term}), E("dd", {}, value));
    add("Subreddit", `r/${p.subreddit}`);
    add("Scheduled for", E("time", {datetime: p.scheduledFor, text: Posts.formatTime(p.scheduledFor)}));
    add("Type", p.kind === "self" ? "text" : p.kind);
    if (p.flairText || p.flairId) add("Flair", E("span", {id: "flair-name", text: p.flairText || p.flairId}));
    if (p.recurrence) {
      const r = p.recurrence;
      const ends = r.count ? `, ${r.count} in all` : r.until ? `, until ${Posts.formatTime(r.until)}` : "";
      add("Repeats", `${r.frequency}${r.interval > 1 ? ` (every ${r.interval})` : ""}${ends}`);
    }
    if (p.redditUrl) add("On Reddit", E("a", {href: p.redditUrl, text: p.redditUrl, rel: "noopener"}));
    if (p.nextAttemptAt && p.status === "scheduled" && p.attempts.length) add("Next attempt", Posts.formatTime(p.nextAttemptAt));
  }

  function content(p) {
    const E = Posts.element;
    const box = $("post-content");
    box.replaceChildren();
    if (p.text) box.append(E("p", {className: "rp-text", text: p.text}));
    if (p.url) box.append(E("p", {}, E("a", {href: p.url, text: p.url, rel: "noopener nofollow"})));
    if (p.mediaIds.length) {
      const strip = E("div", {className: "rp-gallery"});
      p.mediaIds.forEach((item, i) => strip.append(E("figure", {},
        E("img", {src: `/api/media/${item.id}/content`, alt: item.caption || `Image ${i + 1} of the post`}),
        item.caption ? E("figcaption", {text: item.caption}) : null)));
      box.append(strip);
    }
    if (!box.children.length) box.append(E("p", {className: "hint", text: "Title only."}));
  }

  function attempts(p) {
    const body = $("attempts").querySelector("tbody");
    body.replaceChildren();
    if (!p.attempts.length) {
      body.append(Posts.element("tr", {}, Posts.element("td", {colspan: "4", text: "None yet."})));
    }
    p.attempts.forEach((a) => body.append(Posts.element("tr", {},
      Posts.element("td", {text: String(a.attempt)}),
      Posts.element("td", {}, Posts.element("time", {datetime: a.startedAt, text: Posts.formatTime(a.startedAt)})),
      Posts.element("td", {text: a.outcome}),
      Posts.element("td", {text: a.error || "—"}))));
  }

  function render(p) {
    post = p;
    document.title = `${p.title} · Thotto`;
    $("post-title").textContent = p.title;
    $("post-where").textContent = `r/${p.subreddit}`;
    const line = $("post-status-line");
    line.replaceChildren(Posts.statusBadge(p.status));
    facts(p);
    content(p);
    attempts(p);
    const failed = p.status === "failed";
    $("failure").hidden = !failed;
    if (failed) {
      const why = Posts.explainFailure(p);
      $("failure-words").textContent = why.words;
      $("failure-reason").textContent = p.error || "no reason recorded";
      $("failure-fix").textContent = why.fix.label;
      $("failure-fix").href = why.fix.href;
    }
    showChanges(p.status === "publishing" ? "pending" : p.status);
    if (p.status === "publishing") message("");
    if (p.status === "published") message(`Published on Reddit ${p.redditUrl ? "" : "(its link is being recorded)"}`.trim() + ".");
    if (p.status === "cancelled") message("Cancelled: it will not be published.");
    $("edit").href = `/compose?edit=${p.id}`;
    $("duplicate").href = `/compose?from=${p.id}`;
    const when = Posts.parts(new Date(p.scheduledFor));
    if (!$("new-date").value) $("new-date").value = Posts.dateValue(when);
    if (!$("new-time").value) $("new-time").value = Posts.timeValue(when);
  }

  // What may be changed: scheduled posts everything, failed ones an edit or a new time,
  // nothing while the outcome is checked (then the page looks again shortly).
  function showChanges(state) {
    const changeable = state === "scheduled" || state === "failed";
    $("pending").hidden = state !== "pending";
    $("actions").hidden = !changeable && state !== "published" && state !== "cancelled";
    $("edit").hidden = !changeable;
    $("reschedule").hidden = !changeable;
    $("publish-soon").hidden = !changeable;
    $("cancel").hidden = state !== "scheduled";
    clearTimeout(timer);
    if (state === "pending" || state === "scheduled") timer = setTimeout(load, state === "pending" ? 2000 : 3000);
  }

  function message(text) {
    $("post-message").hidden = !text;
    $("post-message").textContent = text;
  }

  // A flair is stored as Reddit's template id: name it from the subreddit's rules.
  async function nameFlair(p) {
    if (p.flairText || !p.flairId) return;
    const answer = await Posts.api("GET", `/api/subreddits/${encodeURIComponent(p.subreddit)}/rules`);
    const flair = answer.ok ? answer.body.flairs.find((f) => f.id === p.flairId) : null;
    if (flair && $("flair-name")) $("flair-name").textContent = flair.text;
  }

  async function load() {
    const answer = await Posts.api("GET", `/api/scheduled-posts/${id}`);
    if (!answer.ok) { message(answer.body.detail || answer.body.error); return; }
    render(answer.body);
    nameFlair(answer.body);
  }

  async function change(body, done) {
    const form = $("reschedule");
    Posts.clearErrors(form);
    const answer = await Posts.api("PATCH", `/api/scheduled-posts/${id}`, body);
    if (answer.ok) {
      message(done(answer.body));
      await load();
      return;
    }
    if (answer.status === 409 && answer.retryAfter) {
      showChanges("pending");
      return;
    }
    Posts.showApiError(form, answer.body);
  }

  $("reschedule").addEventListener("submit", (event) => {
    event.preventDefault();
    const [y, m, d] = $("new-date").value.split("-").map(Number);
    const [h, mi] = $("new-time").value.split(":").map(Number);
    if (!y || Number.isNaN(h)) {
      Posts.showError($("reschedule"), "scheduledFor", "Pick a date and a time.");
      return;
    }
    const at = Posts.fromWall(y, m, d, h, mi);
    change({scheduledFor: at.toISOString()}, (p) => `Rescheduled for ${Posts.formatTime(p.scheduledFor)}.`);
  });

  $("publish-soon").addEventListener("click", () => {
    const at = new Date(Date.now() + 5000);
    change({scheduledFor: at.toISOString()}, () => "It will be published in a few seconds.");
  });

  $("cancel").addEventListener("click", async () => {
    if (!window.confirm(`Cancel “${post.title}”? It will not be published.`)) return;
    const answer = await Posts.api("DELETE", `/api/scheduled-posts/${id}`);
    if (answer.ok) { message("Cancelled: it will not be published."); await load(); return; }
    if (answer.status === 409 && answer.retryAfter) { showChanges("pending"); return; }
    message(answer.body.detail || answer.body.error);
  });

  document.querySelectorAll(".zone").forEach((node) => { node.textContent = Posts.zone(); });
  if (new URLSearchParams(location.search).get("saved")) message("Saved.");
  load();
})();
