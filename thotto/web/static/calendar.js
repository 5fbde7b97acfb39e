// Month and week views of the creator's posts, in their time zone. A post is moved by dragging
// it to another day (its time of day stays), or from the keyboard with Alt+arrows; either way
// the API's PATCH decides, and its refusal is shown in its words.
"use strict";

(() => {
  const root = document.getElementById("calendar");
  if (!root) return;
  const status = document.getElementById("calendar-status");
  const view = root.dataset.view === "week" ? "week" : "month";
  const DAY = 86400e3;

  // Dates are handled as wall-clock days in the creator's zone: {year, month, day}.
  const today = () => Posts.parts(new Date());
  const parseDay = (text) => {
    const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text || "");
    return match ? {year: +match[1], month: +match[2], day: +match[3]} : today();
  };
  // Calendar arithmetic on plain dates (UTC is used only as a calendar without time zones).
  const asUtc = (d) => new Date(Date.UTC(d.year, d.month - 1, d.day));
  const fromUtc = (date) => ({year: date.getUTCFullYear(), month: date.getUTCMonth() + 1, day: date.getUTCDate()});
  const addDays = (d, n) => fromUtc(new Date(asUtc(d).getTime() + n * DAY));
  const mondayOf = (d) => addDays(d, -((asUtc(d).getUTCDay() + 6) % 7));
  const key = (d) => Posts.dateValue(d);
  const sameDay = (a, b) => key(a) === key(b);

  const anchor = parseDay(root.dataset.date);

  function range() {
    if (view === "week") {
      const start = mondayOf(anchor);
      return {start, days: 7, title: `Week of ${label(start, {day: "numeric", month: "long", year: "numeric"})}`};
    }
    const first = {year: anchor.year, month: anchor.month, day: 1};
    const start = mondayOf(first);
    const nextMonth = anchor.month === 12 ? {year: anchor.year + 1, month: 1, day: 1} : {year: anchor.year, month: anchor.month + 1, day: 1};
    const days = Math.ceil((asUtc(nextMonth) - asUtc(start)) / DAY / 7) * 7;
    return {start, days, title: label(first, {month: "long", year: "numeric"})};
  }

  function label(d, options) {
    return new Intl.DateTimeFormat("en-GB", {timeZone: "UTC", ...options}).format(asUtc(d));
  }

  function link(targetView, date) {
    return `/calendar?view=${targetView}&date=${key(date)}`;
  }

  function navigation() {
    const step = view === "week" ? 7 : null;
    const shift = (sign) => step ? addDays(anchor, sign * step)
      : {year: anchor.month + sign === 0 ? anchor.year - 1 : anchor.month + sign === 13 ? anchor.year + 1 : anchor.year,
         month: ((anchor.month - 1 + sign + 12) % 12) + 1, day: 1};
    document.getElementById("previous").href = link(view, shift(-1));
    document.getElementById("next").href = link(view, shift(1));
    document.getElementById("previous").setAttribute("aria-label", `Previous ${view}`);
    document.getElementById("next").setAttribute("aria-label", `Next ${view}`);
    document.getElementById("today").href = link(view, today());
    for (const name of ["month", "week"]) {
      const tab = document.getElementById(`view-${name}`);
      tab.href = link(name, anchor);
      if (name === view) tab.setAttribute("aria-current", "page");
    }
    document.querySelectorAll(".zone").forEach((node) => { node.textContent = Posts.zone(); });
  }

  async function load(span) {
    const from = Posts.fromWall(span.start.year, span.start.month, span.start.day, 0, 0);
    const end = addDays(span.start, span.days);
    const to = Posts.fromWall(end.year, end.month, end.day, 0, 0);
    const posts = [];
    let cursor = "";
    for (let page = 0; page < 10; page++) {
      const query = new URLSearchParams({from: from.toISOString(), to: to.toISOString(), limit: "500"});
      if (cursor) query.set("cursor", cursor);
      const answer = await Posts.api("GET", `/api/scheduled-posts?${query}`);
      if (!answer.ok) { say(answer.body.detail || answer.body.error); break; }
      posts.push(...answer.body.posts);
      cursor = answer.body.nextCursor;
      if (!cursor) break;
    }
    return posts;
  }

  function say(message) { status.textContent = message; }

  function chip(post) {
    const when = Posts.parts(new Date(post.scheduledFor));
    const movable = post.status === "scheduled" || post.status === "failed";
    const a = Posts.element("a", {
      href: `/posts/${post.id}`, className: `cal-post status-${post.status}`, draggable: movable ? "true" : null,
      "data-post-id": post.id, "aria-describedby": movable ? "calendar-help" : null,
    });
    a.append(Posts.element("time", {datetime: post.scheduledFor, text: Posts.timeValue(when)}), " ");
    a.append(Posts.element("span", {className: "cal-title", text: post.title}));
    const meta = Posts.element("span", {className: "cal-meta"}, `r/${post.subreddit} · `);
    meta.append(Posts.statusBadge(post.status));
    a.append(meta);
    a.dataset.time = post.scheduledFor;
    a.dataset.title = post.title;
    if (movable) {
      a.addEventListener("dragstart", (event) => {
        event.dataTransfer.setData("text/plain", String(post.id));
        event.dataTransfer.effectAllowed = "move";
        a.classList.add("dragging");
      });
      a.addEventListener("dragend", () => a.classList.remove("dragging"));
      a.addEventListener("keydown", (event) => {
        if (!event.altKey) return;
        const days = {ArrowLeft: -1, ArrowRight: 1, ArrowUp: -7, ArrowDown: 7}[event.key];
        if (!days) return;
        event.preventDefault();
        const target = addDays(when, days);
        move(post, target, true);
      });
    }
    return a;
  }

  // Moves a post to another day at its time of day, through the API.
  async function move(post, day, keepFocus) {
    const when = Posts.parts(new Date(post.scheduledFor));
    const at = Posts.fromWall(day.year, day.month, day.day, when.hour, when.minute);
    say(`Moving “${post.title}”…`);
    const answer = await Posts.api("PATCH", `/api/scheduled-posts/${post.id}`, {scheduledFor: at.toISOString()});
    if (!answer.ok) {
      const body = answer.body || {};
      say(answer.status === 409 && answer.retryAfter
        ? `“${post.title}” cannot move while Thotto checks whether Reddit took it.`
        : `Not moved: ${body.detail || body.error}`);
      return;
    }
    const span = range();
    const last = addDays(span.start, span.days - 1);
    if (keepFocus && (key(day) < key(span.start) || key(day) > key(last))) {
      // Moved out of the days shown: show the ones it went to, with the post in focus.
      window.location.href = `${link(view, day)}&focus=${post.id}`;
      return;
    }
    await render();
    say(`Moved “${post.title}” to ${Posts.formatTime(at)}.`);
    if (keepFocus) {
      const again = root.querySelector(`[data-post-id="${post.id}"]`);
      if (again) again.focus();
    }
  }

  let byId = new Map();

  function dayCell(d, span, posts, current) {
    const inMonth = view === "week" || d.month === anchor.month;
    const cell = Posts.element("li", {className: `cal-day${inMonth ? "" : " outside"}${sameDay(d, today()) ? " today" : ""}`,
                                      "data-date": key(d)});
    const heading = Posts.element("h3", {className: "cal-date"});
    heading.append(Posts.element("span", {className: "cal-weekday", text: label(d, {weekday: "short"})}), " ",
                   Posts.element("span", {text: label(d, view === "week" ? {day: "numeric", month: "short"} : {day: "numeric"})}));
    if (sameDay(d, today())) heading.append(Posts.element("span", {className: "visually-hidden", text: " (today)"}));
    heading.setAttribute("aria-label", label(d, {weekday: "long", day: "numeric", month: "long"}) +
                         (posts.length ? `, ${posts.length} post${posts.length > 1 ? "s" : ""}` : ", no posts"));
    cell.append(heading);
    const list = Posts.element("ul", {className: "cal-posts"});
    posts.forEach((post) => list.append(Posts.element("li", {}, chip(post))));
    cell.append(list);
    cell.addEventListener("dragover", (event) => { event.preventDefault(); cell.classList.add("drop"); });
    cell.addEventListener("dragleave", () => cell.classList.remove("drop"));
    cell.addEventListener("drop", (event) => {
      event.preventDefault();
      cell.classList.remove("drop");
      const post = byId.get(event.dataTransfer.getData("text/plain"));
      if (post) move(post, d, false);
    });
    return cell;
  }

  async function render() {
    const span = range();
    document.getElementById("range").textContent = span.title;
    const posts = await load(span);
    byId = new Map(posts.map((post) => [String(post.id), post]));
    const days = new Map();
    posts.forEach((post) => {
      const d = key(Posts.parts(new Date(post.scheduledFor)));
      if (!days.has(d)) days.set(d, []);
      days.get(d).push(post);
    });
    const head = Posts.element("ol", {className: "cal-weekdays", "aria-hidden": "true"});
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"].forEach((name) => head.append(Posts.element("li", {text: name})));
    const grid = Posts.element("ol", {className: `cal-grid cal-${view}`});
    for (let i = 0; i < span.days; i++) {
      const d = addDays(span.start, i);
      grid.append(dayCell(d, span, days.get(key(d)) || [], anchor));
    }
    root.replaceChildren(head, grid);
    if (!posts.length) say(`No posts in this ${view}.`);
    else if (!status.textContent.startsWith("Moved")) say(`${posts.length} post${posts.length > 1 ? "s" : ""} in this ${view}.`);
  }

  navigation();
  render().then(() => {
    const focus = new URLSearchParams(window.location.search).get("focus");
    const chip = focus && root.querySelector(`[data-post-id="${CSS.escape(focus)}"]`);
    if (chip) {
      chip.focus();
      say(`Moved “${chip.dataset.title}” to ${Posts.formatTime(chip.dataset.time)}.`);
    }
  });
})();
