// The composer: builds the API's ScheduleRequest (or PostChange when editing) from the form,
// asks the API what it would refuse while the creator types, shows the subreddit's rules, its
// best times and a preview. Every rule is the API's: this page only shows what it answers.
"use strict";

(() => {
  const form = document.getElementById("compose");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const editId = form.dataset.edit;
  const fromId = form.dataset.from;
  const state = {rules: null, media: [], accounts: [], checkSeq: 0, rulesSeq: 0, lastRulesFor: ""};

  const debounce = (fn, ms) => {
    let timer;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  };

  const kind = () => form.querySelector('input[name="kind"]:checked').value;
  const subreddits = () => $("subreddits").value.split(/[\s,]+/)
    .map((name) => name.trim().replace(/^\/?r\//i, "")).filter(Boolean);

  function scheduledFor() {
    const date = $("date").value, time = $("time").value;
    if (!date || !time) return null;
    const [y, m, d] = date.split("-").map(Number);
    const [h, mi] = time.split(":").map(Number);
    return Posts.fromWall(y, m, d, h, mi).toISOString();
  }

  function recurrence() {
    const frequency = $("frequency").value;
    if (!frequency) return null;
    const rule = {frequency, interval: Number($("interval").value) || 1, timezone: Posts.zone()};
    if ($("end-kind").value === "count") rule.count = Number($("count").value) || 1;
    else if ($("until").value) {
      const [y, m, d] = $("until").value.split("-").map(Number);
      rule.until = Posts.fromWall(y, m, d, 23, 59).toISOString();
    }
    return rule;
  }

  function mediaIds() {
    if (kind() === "gallery") {
      return state.media.map((item) => {
        const entry = {id: item.id};
        if (item.caption) entry.caption = item.caption;
        return entry;
      });
    }
    return state.media.slice(0, 1).map((item) => item.id);
  }

  // The fields every request carries, as the API names them.
  function content() {
    const body = {title: $("title").value, nsfw: $("nsfw").checked, spoiler: $("spoiler").checked};
    const k = kind();
    if (k === "self" && $("text").value.trim()) body.text = $("text").value;
    if (k === "link") body.url = $("url").value.trim();
    if (k === "image" || k === "gallery") body.mediaIds = mediaIds();
    const flair = $("flair").value;
    body.flairId = flair || null;
    body.flairText = flair && !$("flair-text-field").hidden && $("flair-text").value ? $("flair-text").value : null;
    return body;
  }

  function scheduleRequest(forCheck) {
    const body = {...content(), kind: kind()};
    if (body.flairId === null) delete body.flairId;
    if (body.flairText === null) delete body.flairText;
    const names = subreddits();
    if (names.length > 1) body.subreddits = names; else body.subreddit = names[0] || "";
    // While no time is picked, a check still says what else would be refused.
    body.scheduledFor = scheduledFor() || (forCheck ? new Date(Date.now() + 3600e3).toISOString() : "");
    if ($("account").value) body.account = $("account").value;
    const repeat = recurrence();
    if (repeat) body.recurrence = repeat;
    return body;
  }

  function postChange() {
    const body = content();
    if (kind() !== "self") body.text = null;
    if (kind() !== "link") body.url = null;
    body.subreddit = subreddits()[0] || "";
    body.scheduledFor = scheduledFor() || "";
    if (!["image", "gallery"].includes(kind())) delete body.mediaIds;
    return body;
  }

  // --- showing the form's parts ---------------------------------------------------------

  function showKind() {
    const k = kind();
    form.querySelectorAll("[data-kind]").forEach((part) => {
      part.hidden = !part.dataset.kind.split(" ").includes(k);
    });
    $("media-hint").textContent = k === "gallery"
      ? "2 to 20 images, each with an optional caption. PNG, JPEG, GIF or WebP; location and camera data are removed."
      : "One image: PNG, JPEG, GIF or WebP; location and camera data are removed.";
    renderMedia();
  }

  function showTitleCount() {
    const rules = state.rules && state.rules.known ? state.rules : null;
    const max = Math.min(300, (rules && rules.titleMaxLength) || 300);
    const min = (rules && rules.titleMinLength) || 1;
    const length = $("title").value.length;
    $("title-count").textContent = `${length} / ${max} characters` + (min > 1 ? `, at least ${min}` : "");
    $("title-count").classList.toggle("over", length > max || (length > 0 && length < min));
  }

  function renderRules(rules) {
    const box = $("rules");
    box.replaceChildren();
    const E = Posts.element;
    if (!rules) {
      box.append(E("p", {className: "hint", text: "Type a subreddit to see its rules."}));
      return;
    }
    if (!rules.known) {
      box.append(E("p", {className: "hint", text: `Thotto does not know r/${rules.subreddit}'s rules yet; Reddit decides when the post is published.`}));
      return;
    }
    const list = E("ul", {className: "rule-list"});
    const add = (text) => list.append(E("li", {text}));
    const kinds = {self: "text", link: "link", image: "image", gallery: "gallery"};
    add(`Takes ${rules.postKinds.map((k) => kinds[k]).join(", ") || "no"} posts`);
    if (rules.flairRequired) add("A flair is required");
    if (rules.titleMinLength || rules.titleMaxLength) {
      add(`Titles of ${rules.titleMinLength || 1} to ${rules.titleMaxLength || 300} characters`);
    }
    if (rules.titleRequiredStrings.length) add(`Titles must contain ${rules.titleRequiredStrings.join(", ")}`);
    if (rules.titleBlacklistedStrings.length) add(`Titles must not contain ${rules.titleBlacklistedStrings.join(", ")}`);
    if (rules.bodyPolicy === "required") add("Text posts need a body");
    if (rules.bodyPolicy === "notAllowed") add("Text posts take no body");
    if (rules.domainWhitelist.length) add(`Links only to ${rules.domainWhitelist.join(", ")}`);
    if (rules.over18) add("NSFW community");
    box.append(E("p", {}, E("strong", {text: `r/${rules.subreddit}`}),
                 rules.subscribers ? ` · ${rules.subscribers.toLocaleString("en")} members` : ""));
    box.append(list);
    if (rules.communityRules.length) {
      const community = E("ol", {className: "community-rules", "aria-label": `r/${rules.subreddit}'s own rules`});
      rules.communityRules.forEach((rule) => community.append(E("li", {text: rule})));
      box.append(E("p", {className: "hint", text: "The community's own rules (its moderators enforce them):"}), community);
    }
  }

  function renderFlairs(rules, keep) {
    const field = $("flair-field"), select = $("flair");
    const flairs = rules && rules.known && subreddits().length === 1 ? rules.flairs : [];
    field.hidden = flairs.length === 0;
    const current = keep || select.value;
    select.replaceChildren(Posts.element("option", {value: "", text: rules && rules.flairRequired ? "Pick a flair (required)" : "No flair"}));
    flairs.forEach((flair) => select.append(Posts.element("option", {value: flair.id, text: flair.text})));
    if (flairs.some((flair) => flair.id === current)) select.value = current;
    select.required = Boolean(rules && rules.flairRequired);
    $("flair-required-note").textContent = select.required
      ? `r/${rules.subreddit} requires a flair on every post.` : "Optional.";
    showFlairText();
  }

  function showFlairText() {
    const rules = state.rules;
    const chosen = rules && rules.flairs ? rules.flairs.find((flair) => flair.id === $("flair").value) : null;
    $("flair-text-field").hidden = !(chosen && chosen.textEditable);
  }

  function renderBestTimes(times) {
    const box = $("best-times"), list = box.querySelector("ul");
    list.replaceChildren();
    const slots = times && times.slots ? times.slots.slice(0, 6) : [];
    box.hidden = slots.length === 0;
    const now = Date.now();
    // The best slots' next occurrences (weekday 0 is Monday, hours in UTC), soonest first.
    const next = slots.map((slot) => {
      const at = new Date(now);
      at.setUTCMinutes(0, 0, 0);
      at.setUTCHours(slot.hour);
      const today = (at.getUTCDay() + 6) % 7;
      let days = (slot.weekday - today + 7) % 7;
      if (days === 0 && at.getTime() <= now + 60e3) days = 7;
      at.setUTCDate(at.getUTCDate() + days);
      return {slot, at};
    }).sort((a, b) => a.at - b.at);
    next.forEach(({slot, at}) => {
      const button = Posts.element("button", {type: "button", className: "chip", "data-at": at.toISOString(),
        text: Posts.formatTime(at), "aria-label": `Use ${Posts.formatTime(at)} (score ${Math.round(slot.score)})`});
      button.addEventListener("click", () => {
        const p = Posts.parts(at);
        $("date").value = Posts.dateValue(p);
        $("time").value = Posts.timeValue(p);
        form.dispatchEvent(new Event("input"));
        $("time").focus();
      });
      list.append(Posts.element("li", {}, button));
    });
  }

  function renderMedia() {
    const list = $("media-list");
    list.replaceChildren();
    const gallery = kind() === "gallery";
    state.media.forEach((item, index) => {
      const img = Posts.element("img", {src: `/api/media/${item.id}/content`, alt: `Image ${index + 1}: ${item.name}`});
      const remove = Posts.element("button", {type: "button", className: "link-button", text: "Remove",
                                             "aria-label": `Remove image ${index + 1}`});
      remove.addEventListener("click", () => { state.media.splice(index, 1); renderMedia(); refresh(); });
      const li = Posts.element("li", {}, img);
      if (gallery) {
        const id = `caption-${item.id}`;
        const input = Posts.element("input", {id, maxlength: "180", value: item.caption || ""});
        input.addEventListener("input", () => { item.caption = input.value; refresh(); });
        li.append(Posts.element("label", {for: id, text: `Caption ${index + 1}`}), input);
      }
      li.append(remove);
      list.append(li);
    });
  }

  function renderPreview() {
    const preview = $("preview");
    const names = subreddits();
    const q = (selector) => preview.querySelector(selector);
    q(".rp-sub").textContent = names.length ? names.map((n) => `r/${n}`).join(", ") : "r/…";
    q(".rp-author").textContent = $("account").value ? `u/${$("account").value}`
      : (state.accounts[0] ? `u/${state.accounts[0].redditUsername}` : "u/you");
    const when = scheduledFor();
    q(".rp-when").textContent = when ? Posts.formatTime(when) : "time not set";
    const flags = q(".rp-flags");
    flags.replaceChildren();
    const flair = state.rules && state.rules.flairs ? state.rules.flairs.find((f) => f.id === $("flair").value) : null;
    if (flair) flags.append(Posts.element("span", {className: "rp-flair", text: ($("flair-text").value && flair.textEditable) ? $("flair-text").value : flair.text}));
    if ($("nsfw").checked) flags.append(Posts.element("span", {className: "rp-nsfw", text: "NSFW"}));
    if ($("spoiler").checked) flags.append(Posts.element("span", {className: "rp-spoiler", text: "Spoiler"}));
    q(".rp-title").textContent = $("title").value || "Your title";
    const body = q(".rp-body");
    body.replaceChildren();
    const k = kind();
    if (k === "self") body.append(Posts.element("p", {className: "rp-text", text: $("text").value}));
    if (k === "link" && $("url").value) {
      let host = $("url").value;
      try { host = new URL($("url").value).hostname.replace(/^www\./, ""); } catch { /* shown as typed */ }
      body.append(Posts.element("p", {className: "rp-link", text: `${host} ↗`}));
    }
    if (k === "image" || k === "gallery") {
      const shown = k === "image" ? state.media.slice(0, 1) : state.media;
      const strip = Posts.element("div", {className: k === "gallery" ? "rp-gallery" : "rp-image"});
      shown.forEach((item, i) => strip.append(Posts.element("img", {src: `/api/media/${item.id}/content`, alt: item.caption || `Image ${i + 1}`})));
      if (k === "gallery" && shown.length) strip.append(Posts.element("span", {className: "rp-count", text: `1 / ${shown.length}`}));
      body.append(strip);
    }
  }

  // --- asking the API ---------------------------------------------------------------------

  const loadRules = debounce(async () => {
    const name = subreddits()[0];
    const key = `${name}|${$("account").value}|${subreddits().length}`;
    if (key === state.lastRulesFor) return;
    state.lastRulesFor = key;
    const seq = ++state.rulesSeq;
    if (!name) { state.rules = null; renderRules(null); renderFlairs(null); renderBestTimes(null); return; }
    const query = $("account").value ? `?account=${encodeURIComponent($("account").value)}` : "";
    const [rules, times] = await Promise.all([
      Posts.api("GET", `/api/subreddits/${encodeURIComponent(name)}/rules${query}`),
      Posts.api("POST", "/api/scheduled-posts/optimal-times", {subreddit: name}),
    ]);
    if (seq !== state.rulesSeq) return;
    state.rules = rules.ok ? rules.body : null;
    renderRules(state.rules);
    renderFlairs(state.rules, form.dataset.flair);
    renderBestTimes(times.ok ? times.body : null);
    showTitleCount();
    renderPreview();
    check();
  }, 350);

  const check = debounce(async () => {
    if (!subreddits().length || !$("title").value) return;
    const seq = ++state.checkSeq;
    const body = editId ? {...scheduleRequest(true), subreddit: subreddits()[0], subreddits: undefined} : scheduleRequest(true);
    const answer = await Posts.api("POST", "/api/scheduled-posts/check", body);
    if (seq !== state.checkSeq) return;
    let problems = answer.ok ? answer.body.problems
      : [{error: answer.body && (answer.body.detail || answer.body.error), field: answer.body && answer.body.field}];
    if (!scheduledFor()) problems = problems.filter((problem) => problem.field !== "scheduledFor");
    if (editId) problems = problems.filter((problem) => !/already has this title/.test(problem.error));
    showProblems(problems);
  }, 500);

  function showProblems(problems) {
    const list = $("problems");
    list.replaceChildren();
    Posts.clearErrors(form);
    if (!problems.length) list.append(Posts.element("li", {className: "ok", text: "Nothing: Thotto's checks pass."}));
    problems.forEach((problem) => {
      list.append(Posts.element("li", {className: "problem", text: problem.error}));
      Posts.showError(form, problem.field, problem.error);
    });
  }

  async function upload(files) {
    const status = $("media-status");
    for (const file of files) {
      status.textContent = `Uploading ${file.name}…`;
      const data = new FormData();
      data.append("file", file, file.name);
      const answer = await Posts.api("POST", "/api/media", data);
      if (!answer.ok) {
        Posts.clearErrors(form);
        Posts.showApiError(form, {...answer.body, field: "mediaIds"});
        status.textContent = "";
        return;
      }
      state.media.push({id: answer.body.id, name: file.name, caption: ""});
    }
    status.textContent = `${state.media.length} image${state.media.length === 1 ? "" : "s"} uploaded; location and camera data removed.`;
    $("media-file").value = "";
    renderMedia();
    refresh();
  }

  async function submit(event) {
    event.preventDefault();
    Posts.clearErrors(form);
    const button = $("submit");
    if ($("flair").required && !$("flair").value) {
      Posts.showError(form, "flairId", `r/${subreddits()[0]} requires a flair: pick one before scheduling.`);
      $("flair").focus();
      return;
    }
    if (!scheduledFor()) {
      Posts.showError(form, "scheduledFor", "Pick a date and a time (or one of the best times).");
      $("date").focus();
      return;
    }
    button.disabled = true;
    const answer = editId
      ? await Posts.api("PATCH", `/api/scheduled-posts/${editId}`, postChange())
      : await Posts.api("POST", "/api/scheduled-posts", scheduleRequest(false));
    button.disabled = false;
    if (!answer.ok) {
      if (answer.status === 409 && answer.retryAfter && editId) {
        Posts.showError(form, null, "Thotto is checking whether Reddit already took this post; it can be edited once that is known. " + (answer.body.detail || ""));
      } else {
        Posts.showApiError(form, answer.body);
      }
      const first = form.querySelector('[data-error-for]:not([hidden])');
      if (first) first.scrollIntoView({block: "center"});
      return;
    }
    const posts = editId ? [answer.body] : answer.body.posts;
    window.location.href = posts.length === 1 ? `/posts/${posts[0].id}?saved=1` : "/posts?saved=" + posts.length;
  }

  const refresh = () => { showTitleCount(); renderPreview(); check(); };

  // --- filling the form from a post (edit, duplicate) -----------------------------------------

  function fill(post, withTime) {
    $("subreddits").value = post.subreddit;
    form.querySelector(`input[name="kind"][value="${post.kind}"]`).checked = true;
    $("title").value = post.title;
    $("text").value = post.text || "";
    $("url").value = post.url || "";
    $("nsfw").checked = post.nsfw;
    $("spoiler").checked = post.spoiler;
    state.media = post.mediaIds.map((item) => ({id: item.id, name: `image ${item.id}`, caption: item.caption || ""}));
    form.dataset.flair = post.flairId || "";
    $("flair-text").value = post.flairText || "";
    if (withTime && post.status === "scheduled") {
      const p = Posts.parts(new Date(post.scheduledFor));
      $("date").value = Posts.dateValue(p);
      $("time").value = Posts.timeValue(p);
    }
  }

  async function start() {
    form.querySelectorAll(".zone").forEach((node) => { node.textContent = Posts.zone(); });
    document.querySelectorAll(".zone").forEach((node) => { node.textContent = Posts.zone(); });
    const accounts = await Posts.api("GET", "/api/accounts");
    state.accounts = accounts.ok ? accounts.body : [];
    const select = $("account");
    state.accounts.forEach((account) => select.append(Posts.element("option", {value: account.redditUsername, text: `u/${account.redditUsername}`})));
    $("account-field").hidden = state.accounts.length < 2;
    $("no-account").hidden = state.accounts.length > 0;
    const source = editId || fromId;
    if (source) {
      const answer = await Posts.api("GET", `/api/scheduled-posts/${source}`);
      if (answer.ok) fill(answer.body, Boolean(editId));
      if (editId) {
        form.querySelectorAll('input[name="kind"]').forEach((radio) => { radio.disabled = true; });
        $("repeat-field").hidden = true;
        $("account-field").hidden = true;
        if (answer.ok && answer.body.status === "failed") {
          const why = Posts.explainFailure(answer.body);
          form.prepend(Posts.element("p", {className: "notice", id: "failed-notice", role: "status",
            text: `This post failed: ${why.words} Fix it, then pick a new time to schedule it again.`}));
        }
        if (answer.ok && answer.body.status === "publishing") {
          Posts.showError(form, null, "Thotto is checking whether Reddit already took this post; it can be edited once that is known.");
        }
      }
    }
    showKind();
    loadRules();
    refresh();
    if (location.hash === "#flair") setTimeout(() => $("flair").focus(), 800);
  }

  form.addEventListener("input", (event) => {
    if (event.target === $("subreddits") || event.target === $("account")) { loadRules(); }
    refresh();
  });
  form.addEventListener("change", (event) => {
    if (event.target.name === "kind") showKind();
    if (event.target === $("flair")) showFlairText();
    if (event.target === $("frequency")) $("repeat-end").hidden = !$("frequency").value;
    if (event.target === $("end-kind")) {
      const byCount = $("end-kind").value === "count";
      form.querySelectorAll(".end-count").forEach((node) => { node.hidden = !byCount; });
      form.querySelectorAll(".end-until").forEach((node) => { node.hidden = byCount; });
    }
    if (event.target === $("media-file") && event.target.files.length) { upload([...event.target.files]); return; }
    if (event.target === $("account")) loadRules();
    refresh();
  });
  form.addEventListener("submit", submit);
  start();
})();
