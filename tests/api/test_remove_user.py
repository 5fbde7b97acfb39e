"""Removing a user over real HTTP: ``DELETE /api/users/{id}`` (admins), what happens to the
user's tokens, scheduled posts and linked accounts, and the errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


def in_an_hour() -> str:
    return (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()


async def test_an_admin_removes_a_user_whose_tokens_posts_and_accounts_go_with_them(api):
    body = {"subreddit": "test", "title": "Soon", "text": "x", "scheduledFor": in_an_hour()}
    response = await api.pro.client.post("/api/scheduled-posts", json=body)
    assert response.status_code == 201, response.text
    (post,) = response.json()["posts"]
    post_id = post["id"]
    assert (await api.pro.client.get("/api/scheduled-posts")).status_code == 200  # cached list

    response = await api.admin.client.delete(f"/api/users/{api.pro.id}")

    assert response.status_code == 200, response.text
    assert response.json() == {"id": api.pro.id, "name": "pro", "postsCancelled": 1,
                               "tokensRevoked": 1, "accountsUnlinked": 1}
    assert (await api.pro.client.get("/api/me")).status_code == 401
    post = await api.app.store.get_post(post_id)
    assert post.status.value == "cancelled"
    (account,) = await api.app.store.list_accounts(api.pro.id)
    assert account.needs_relink and account.refresh_token_encrypted == b""
    names = [user["name"] for user in (await api.admin.client.get("/api/users")).json()]
    assert "pro" not in names
    assert (await api.admin.client.delete(f"/api/users/{api.pro.id}")).status_code == 404
    # The name is free again.
    assert (await api.admin.client.post("/api/users", json={"name": "pro"})).status_code == 201


async def test_only_admins_remove_users_and_never_the_last_admin(api):
    response = await api.premium.client.delete(f"/api/users/{api.free.id}")
    assert response.status_code == 403
    response = await api.admin.client.delete(f"/api/users/{api.admin.id}")
    assert response.status_code == 409
    error = response.json()
    assert error["error"] == "Conflict" and "last admin" in error["detail"]
    assert (await api.admin.client.get("/api/me")).status_code == 200
    assert (await api.admin.client.delete("/api/users/999999")).status_code == 404
    assert (await api.admin.client.delete("/api/users/x")).status_code == 404
