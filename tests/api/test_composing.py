"""What the composer asks while a creator types, over real HTTP against the sandbox: a
subreddit's rules with its flairs by name, and the problems scheduling would refuse (the
same checks, nothing stored)."""

from __future__ import annotations

from tests.api.test_scheduled_posts import post_body


async def test_rules_name_the_flairs_and_the_community_rules(api, sandbox):
    response = await api.pro.client.get("/api/subreddits/flair_required/rules")
    assert response.status_code == 200, response.text
    rules = response.json()
    assert rules["known"] and rules["flairRequired"]
    assert [flair["text"] for flair in rules["flairs"]] == ["Discussion", "News"]
    assert rules["flairs"][0]["textEditable"] and not rules["flairs"][1]["textEditable"]
    assert rules["communityRules"] == ["Be kind", "Stay on topic"]
    assert set(rules["postKinds"]) == {"self", "link", "image", "gallery"}
    response = await api.pro.client.get("/api/subreddits/self_only/rules")
    assert response.json()["postKinds"] == ["self"]


async def test_rules_of_a_name_that_is_no_subreddit_are_not_found(api):
    response = await api.pro.client.get("/api/subreddits/no%20such!/rules")
    assert response.status_code == 404 and "not a subreddit name" in response.json()["detail"]
    response = await api.pro.client.get("/api/subreddits/test/rules", params={"account": "nobody_here"})
    assert response.status_code == 422 and response.json()["field"] == "account"


async def test_a_user_without_an_account_sees_only_what_thotto_already_knows(api):
    response = await api.free.client.get("/api/subreddits/never_asked/rules")
    assert response.status_code == 200 and response.json()["known"] is False


async def test_check_lists_each_subreddits_problems_and_stores_nothing(api):
    body = post_body(subreddit=None, subreddits=["flair_required", "links_only", "test"])
    body.pop("subreddit")
    response = await api.pro.client.post("/api/scheduled-posts/check", json=body)
    assert response.status_code == 200, response.text
    problems = response.json()["problems"]
    fields = {(problem["subreddit"], problem["field"]) for problem in problems}
    assert {subreddit for subreddit, _ in fields} == {"flair_required", "links_only"}
    assert {("flair_required", "flairId"), ("links_only", "kind")} <= fields
    assert any("requires a flair" in problem["error"] for problem in problems)
    listed = (await api.pro.client.get("/api/scheduled-posts")).json()["posts"]
    assert listed == []


async def test_check_says_what_scheduling_says_in_its_words(api):
    flair = (await api.pro.client.get("/api/subreddits/flair_required/rules")).json()["flairs"][0]["id"]
    good = post_body(subreddit="flair_required", flairId=flair)
    assert (await api.pro.client.post("/api/scheduled-posts/check", json=good)).json() == {"problems": []}
    past = post_body(subreddit="flair_required", scheduledFor="2001-01-01T00:00:00Z")
    (problem,) = (await api.pro.client.post("/api/scheduled-posts/check", json=past)).json()["problems"]
    refused = await api.pro.client.post("/api/scheduled-posts", json=past)
    assert refused.status_code == 422
    assert (problem["error"], problem["field"]) == (refused.json()["detail"], refused.json()["field"])
    tier = await api.free.client.post("/api/scheduled-posts/check", json=good)
    assert tier.json()["problems"][0]["error"] == "Scheduling requires Pro or Premium tier"
