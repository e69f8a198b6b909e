"""IP -> country from an offline database shipped by a PyPI package.

``iptocc`` (MIT OR Apache-2.0) embeds the five Regional Internet Registries' delegation data in
its wheel and answers with no network access and no file I/O; its batch API takes every
distinct address of a run in one call. RIR data names the country a block is *assigned* to,
which agrees with commercial geolocation for about 95% of IPv4 addresses (the package's own
note) - good enough for a risky-country alert, and honest about it in docs/analytics.md.
Documentation and private ranges have no country (``None``); the configuration's
``enrichment.countries`` overrides are applied before this lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

import iptocc

SOURCE = "iptocc (RIR delegation data)"


def lookup_countries(ips: Sequence[str]) -> list[str | None]:
    """ISO 3166-1 alpha-2 code per address, ``None`` where the registries have none."""
    if not ips:
        return []
    found = iptocc.country_code(list(ips))
    return [code.upper() if isinstance(code, str) and len(code) == 2 else None for code in found]
