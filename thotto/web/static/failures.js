// The failure banner on every page: how many posts failed, why in plain words, and the fix at
// hand; accounts Reddit no longer accepts, with a relink (except on the pages that are about
// them already). Shown first, before the page's own content, in the live banner area, so screen
// readers announce it without interrupting.
"use strict";

(() => {
  const banner = document.getElementById("failure-banner");
  if (!banner || typeof Posts === "undefined") return;

  async function show() {
    const [failed, accounts] = await Promise.all([
      Posts.api("GET", "/api/scheduled-posts?status=failed&limit=100"),
      Posts.api("GET", "/api/accounts"),
    ]);
    const posts = failed.ok ? failed.body.posts : [];
    const ownPage = ["/", "/accounts"].includes(window.location.pathname);
    const relink = accounts.ok && !ownPage ? accounts.body.filter((account) => account.needsRelink) : [];
    banner.replaceChildren();
    if (!posts.length && !relink.length) { banner.hidden = true; return; }
    const E = Posts.element;
    const count = posts.length;
    if (count) {
      banner.append(E("h2", {className: "banner-title",
        text: `${count} post${count === 1 ? "" : "s"} failed to publish`}));
      const list = E("ul");
      posts.slice(0, 3).forEach((post) => {
        const why = Posts.explainFailure(post);
        list.append(E("li", {},
          E("a", {href: `/posts/${post.id}`, text: `“${post.title}”`}), ` — ${why.words} `,
          E("a", {className: "banner-fix", href: why.fix.href, text: why.fix.label})));
      });
      banner.append(list);
      if (count > 3) banner.append(E("p", {}, E("a", {href: "/posts?status=failed", text: `See all ${count} failed posts`})));
    }
    if (relink.length) {
      banner.append(E("p", {},
        `${relink.map((account) => `u/${account.redditUsername}`).join(", ")} must be linked again before ${relink.length === 1 ? "its" : "their"} posts can publish. `,
        E("a", {className: "banner-fix", href: "/accounts", text: "Relink the account"})));
    }
    banner.hidden = false;
  }

  show();
})();
