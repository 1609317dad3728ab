"""How readers page through saved blocks of some types: Prefect's ``POST /block_documents/filter``.

Prefect's read of one block type (``read_block_documents_by_type``) answers every document of
the type and ignores ``offset`` and ``limit``: a reader that pages with it and gets a full page
asks again for the same page, for ever.

    >>> query = documents_query(["chatops-app"], offset=200)
    >>> query["block_types"], query["offset"], query["limit"]
    ({'slug': {'any_': ['chatops-app']}}, 200, 200)
"""

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

DOCUMENTS_FILTER = "/block_documents/filter"
"""The Prefect API path the query is posted to."""
PAGE_SIZE = 200
"""Documents per answer: the Prefect API's largest page."""


def documents_query(slugs: Iterable[str], offset: int) -> dict[str, Any]:
    """The body of one page's query: the named blocks of the types ``slugs``, without secrets,
    by name, from ``offset`` on. An answer shorter than its ``limit`` is the last page."""
    return {
        "block_types": {"slug": {"any_": list(slugs)}},
        "block_documents": {"is_anonymous": {"eq_": False}},
        "include_secrets": False,
        "sort": "NAME_ASC",
        "offset": offset,
        "limit": PAGE_SIZE,
    }


def saved_documents(client: "SyncPrefectClient", slugs: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Every named document of the block types ``slugs`` (JSON, without secrets; its
    ``block_type.slug`` says which type), page by page. A type never saved yet has none."""
    slugs = list(slugs)
    offset = 0
    while True:
        query = documents_query(slugs, offset)
        page = client.request("POST", DOCUMENTS_FILTER, json=query).json()
        yield from page
        if len(page) < query["limit"]:
            return
        offset += len(page)
