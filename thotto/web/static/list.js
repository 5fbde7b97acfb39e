// The list of the creator's posts: filtered by status (asked of the API), subreddit, account
// and a search of titles and texts; each with the actions its status allows.
"use strict";

(() => {
  const list = document.getElementById("post-list");
  if (!list) return;
  const filters = document.getElementById("filters");
  const status = document.getElementById("list-status");
  const $ = (id) => document.getElementById(id);
  let posts = [];
  let accounts = new Map();

  async function load() {
    posts = [];
    let cursor = "";
    for (let page = 0; page < 5; page++) {
      const query = new URLSearchParams({limit: "500"});
      if ($("status").value) query.set("status", $("status").value);
      if (cursor) query.set("cursor", cursor);
      const answer = await Posts.api("GET", `/api/scheduled-posts?${query}`);
      if (!answer.ok) { status.textContent = answer.body.detail || answer.body.error; return; }
      posts.push(...answer.body.posts);
      cursor = answer.body.nextCursor;
      if (!cursor) break;
    }
    fillChoices();
    render();
  }

  function fillChoices() {
    const subreddit = $("subreddit"), kept = subreddit.value;
    const names = [...new Set(posts.map((post) => post.subreddit.toLowerCase()))].sort();
    subreddit.replaceChildren(Posts.element("option", {value: "", text: "Any"}));
    names.forEach((name) => subreddit.append(Posts.element("option", {value: name, text: `r/${name}`})));
    if (names.includes(kept)) subreddit.value = kept;
  }

  function shown() {
    const words = $("search").value.trim().toLowerCase();
    return posts.filter((post) =>
      (!$("subreddit").value || post.subreddit.toLowerCase() === $("subreddit").value) &&
      (!$("account-filter").value || String(post.accountId) === $("account-filter").value) &&
      (!words || `${post.title} ${post.text || ""} ${post.url || ""}`.toLowerCase().includes(words)));
  }

  function item(post) {
    const E = Posts.element;
    const li = E("li", {className: `post-item status-${post.status}`});
    const head = E("div", {className: "post-item-head"});
    head.append(E("time", {datetime: post.scheduledFor, text: Posts.formatTime(post.scheduledFor)}), Posts.statusBadge(post.status));
    li.append(head);
    li.append(E("h2", {className: "post-item-title"}, E("a", {href: `/posts/${post.id}`, text: post.title})));
    const account = accounts.get(post.accountId);
    li.append(E("p", {className: "post-item-meta", text: `r/${post.subreddit}${account ? ` · u/${account}` : ""} · ${post.kind === "self" ? "text" : post.kind}`}));
    if (post.status === "failed") {
      const why = Posts.explainFailure(post);
      li.append(E("p", {className: "post-item-error"}, why.words, " ", E("a", {href: why.fix.href, text: why.fix.label})));
    }
    if (post.status === "publishing") {
      li.append(E("p", {className: "hint", text: "Thotto is checking whether Reddit took it; it cannot be changed until then."}));
    }
    const actions = E("div", {className: "action-row"});
    if (post.status === "scheduled" || post.status === "failed") {
      actions.append(E("a", {className: "button small", href: `/compose?edit=${post.id}`, text: "Edit", "aria-label": `Edit “${post.title}”`}));
    }
    actions.append(E("a", {className: "button small", href: `/compose?from=${post.id}`, text: "Duplicate", "aria-label": `Duplicate “${post.title}”`}));
    if (post.status === "scheduled") {
      const cancel = E("button", {type: "button", className: "button small danger", text: "Cancel", "aria-label": `Cancel “${post.title}”`});
      cancel.addEventListener("click", () => cancelPost(post));
      actions.append(cancel);
    }
    li.append(actions);
    return li;
  }

  async function cancelPost(post) {
    if (!window.confirm(`Cancel “${post.title}”? It will not be published.`)) return;
    const answer = await Posts.api("DELETE", `/api/scheduled-posts/${post.id}`);
    status.textContent = answer.ok ? `Cancelled “${post.title}”.`
      : (answer.status === 409 && answer.retryAfter ? "Thotto is checking whether Reddit took it; try again shortly."
         : `Not cancelled: ${answer.body.detail || answer.body.error}`);
    if (answer.ok) await load();
  }

  function render() {
    const visible = shown();
    list.replaceChildren(...visible.map(item));
    const saved = new URLSearchParams(location.search).get("saved");
    status.textContent = (saved ? `Scheduled ${saved} posts. ` : "") +
      `${visible.length} of ${posts.length} post${posts.length === 1 ? "" : "s"} shown.`;
  }

  async function start() {
    const answer = await Posts.api("GET", "/api/accounts");
    if (answer.ok) {
      answer.body.forEach((account) => {
        accounts.set(account.id, account.redditUsername);
        $("account-filter").append(Posts.element("option", {value: String(account.id), text: `u/${account.redditUsername}`}));
      });
    }
    await load();
  }

  filters.addEventListener("submit", (event) => event.preventDefault());
  $("status").addEventListener("change", load);
  $("subreddit").addEventListener("change", render);
  $("account-filter").addEventListener("change", render);
  $("search").addEventListener("input", render);
  start();
})();
