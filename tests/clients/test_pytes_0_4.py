"""py-tes 0.4.2 itself (Snakemake's TES plugin, Toil, cwl-tes) against the live server.

py-tes 0.4 speaks TES 0.3 for service-info (`{url}/v1/tasks/service-info`, fields `name`, `doc`,
`storage` only: any other key makes `unmarshal` raise) and sends `Authorization: Basic None:None`
when no credentials are given.
"""

from __future__ import annotations

import pytest

from tests.api.conftest import Api
from tests.clients import old_pytes
from tests.conformance.conftest import live  # noqa: F401 - the module's server


@pytest.mark.parametrize("suffix", ["", "/ga4gh/tes"], ids=["funnel-style-url", "spec-url"])
def test_service_info_parses_under_py_tes_0_4(live: Api, suffix: str) -> None:  # noqa: F811
    info = old_pytes.run(
        "info = tes.HTTPClient(url).get_service_info()\n"
        "result = {'name': info.name, 'doc': info.doc, 'storage': info.storage}",
        url=live.url + suffix,
    )
    expected = live.http.get("/ga4gh/tes/v1/service-info").json()
    assert info == {"name": expected["name"], "doc": expected["description"], "storage": expected["storage"]}
