// What the post pages share: times in the creator's time zone, calls to the JSON API, errors
// beside their fields, and post statuses in words. Vanilla JS, no build step.
"use strict";

// Loaded by the base page (for the failure banner) and by each post page: defined once.
var Posts = window.Posts || (() => {
  // The creator's IANA time zone, as the page states it (UTC until they choose one).
  const zone = () => {
    const holder = document.querySelector("[data-time-zone]");
    const meta = document.querySelector('meta[name="time-zone"]');
    return (holder && holder.dataset.timeZone) || (meta && meta.content) || "UTC";
  };

  // The wall-clock parts of an instant in a time zone.
  function parts(date, timeZone = zone()) {
    const format = new Intl.DateTimeFormat("en-GB", {
      timeZone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", weekday: "short",
    });
    const out = {};
    for (const part of format.formatToParts(date)) out[part.type] = part.value;
    return {
      year: +out.year, month: +out.month, day: +out.day, hour: +out.hour % 24,
      minute: +out.minute, second: +out.second, weekday: out.weekday,
    };
  }

  // The instant at a wall-clock time in a time zone (the zone's offset found by asking Intl
  // twice, which settles across daylight-saving changes).
  function fromWall(year, month, day, hour, minute, timeZone = zone()) {
    const wanted = Date.UTC(year, month - 1, day, hour, minute);
    let guess = wanted;
    for (let i = 0; i < 2; i++) {
      const p = parts(new Date(guess), timeZone);
      const seen = Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute);
      guess += wanted - seen;
    }
    return new Date(guess);
  }

  const pad = (n) => String(n).padStart(2, "0");
  const dateValue = (p) => `${p.year}-${pad(p.month)}-${pad(p.day)}`;
  const timeValue = (p) => `${pad(p.hour)}:${pad(p.minute)}`;

  // "Tue 3 Dec 2026, 14:00" in the creator's zone.
  function formatTime(value) {
    const date = value instanceof Date ? value : new Date(value);
    return new Intl.DateTimeFormat("en-GB", {
      timeZone: zone(), weekday: "short", day: "numeric", month: "short", year: "numeric",
      hour: "2-digit", minute: "2-digit", hourCycle: "h23",
    }).format(date);
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  // Calls the JSON API with the session cookie and the CSRF header; answers
  // {ok, status, body, retryAfter} and never throws for an HTTP error.
  async function api(method, path, body) {
    const headers = {"Accept": "application/json", "X-CSRF-Token": csrfToken()};
    const options = {method, headers, credentials: "same-origin"};
    if (body instanceof FormData || body instanceof Blob) {
      options.body = body;
    } else if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      return {ok: false, status: 0, body: {error: "Thotto cannot be reached", detail: String(error)}};
    }
    const text = await response.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch { parsed = {error: text}; }
    return {ok: response.ok, status: response.status, body: parsed,
            retryAfter: response.headers.get("Retry-After")};
  }

  // Clears the messages beside a form's fields.
  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach((slot) => { slot.textContent = ""; slot.hidden = true; });
    form.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  }

  // Shows each problem beside the field it names ({error, detail, field} or {error, field});
  // a problem without a field of this form goes to its general slot.
  function showError(form, field, message) {
    const key = (field || "").split(/[.[]/)[0];
    let slot = key && form.querySelector(`[data-error-for~="${key}"]`);
    if (!slot) slot = form.querySelector('[data-error-for="form"]');
    if (!slot) return;
    slot.hidden = false;
    slot.textContent = slot.textContent ? `${slot.textContent} ${message}` : message;
    const input = slot.id && form.querySelector(`[aria-describedby~="${slot.id}"]`);
    if (input) input.setAttribute("aria-invalid", "true");
  }

  function showApiError(form, body) {
    if (!body) return showError(form, null, "Something went wrong; try again.");
    if (Array.isArray(body.errors)) {
      body.errors.forEach((item) => showError(form, item.field, item.error));
      return;
    }
    const words = body.detail ? body.detail : body.error;
    showError(form, body.field, words);
  }

  const STATUS_WORDS = {
    scheduled: "Scheduled", publishing: "Being checked", published: "Published",
    failed: "Failed", cancelled: "Cancelled",
  };

  function statusBadge(status) {
    const badge = document.createElement("span");
    badge.className = `status status-${status}`;
    badge.textContent = STATUS_WORDS[status] || status;
    return badge;
  }

  // A failure's reason in plain words and the fix that fits it (what the banner and the post
  // page offer). `error` is the reason Thotto recorded, in Reddit's or Thotto's words.
  function explainFailure(post) {
    const error = post.error || "";
    const fix = (label, href) => ({label, href});
    const edit = `/compose?edit=${post.id}`;
    if (/flair/i.test(error)) {
      return {words: `r/${post.subreddit} wants a flair on this post.`,
              fix: fix("Choose a flair and reschedule", `${edit}#flair`)};
    }
    if (/relink|link .*again|INVALID_GRANT|invalid_grant|sign.?in|password|login/i.test(error)) {
      return {words: "Reddit no longer accepts this account's sign-in.", fix: fix("Relink the account", "/accounts")};
    }
    if (/NO_SELFS|NO_LINKS|does not allow|NO_IMAGES|kind/i.test(error)) {
      return {words: `r/${post.subreddit} does not take this kind of post.`, fix: fix("Edit and reschedule", edit)};
    }
    if (/title/i.test(error)) {
      return {words: "Reddit refused the title.", fix: fix("Edit the title and reschedule", edit)};
    }
    if (/NOEXIST|banned|private|NOTALLOWED/i.test(error)) {
      return {words: `r/${post.subreddit} cannot be posted to.`, fix: fix("Pick another subreddit", edit)};
    }
    return {words: error ? `Reddit refused it: ${error}` : "It could not be published.",
            fix: fix("Edit and reschedule", edit)};
  }

  function element(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "text") node.textContent = value;
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  return {zone, parts, fromWall, dateValue, timeValue, pad, formatTime, api, clearErrors, showError,
          showApiError, statusBadge, explainFailure, element, STATUS_WORDS};
})();
