"""Store contract: input forged by a client is refused as a ValidationError naming its field,
never passed on to the database driver to overflow (runs on every adapter)."""

from __future__ import annotations

import base64

import pytest

from tests.store.test_contract import make_account
from thotto.engine.errors import ValidationError


def forged(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize("cursor", [
    pytest.param(forged("99999999999999999999999:1"), id="time-past-int64"),
    pytest.param(forged("1:99999999999999999999999"), id="id-past-int64"),
    pytest.param(forged("-99999999999999999999999:1"), id="time-before-int64"),
    pytest.param(forged(f"1:{2**63}"), id="id-just-past-int64"),
])
async def test_a_forged_cursor_with_numbers_out_of_range_is_refused(store, cursor):
    account = await make_account(store)
    with pytest.raises(ValidationError) as refused:
        await store.list_posts(account.user_id, cursor=cursor)
    assert refused.value.field == "cursor"


async def test_a_cursor_at_the_edge_of_the_range_is_still_a_cursor(store):
    account = await make_account(store)
    page = await store.list_posts(account.user_id, cursor=forged(f"0:{2**63 - 1}"))
    assert page.posts == [] and page.next_cursor is None
