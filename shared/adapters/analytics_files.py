"""Files the analytics read: the detection catalog and ``.kql`` files, the configuration with
its threat lists, and the Azure service-tags document.

Relative paths in a configuration (``threat_lists``, ``enrichment.service_tags``) are resolved
against the configuration file's folder, so a config and its lists travel together.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shared.analytics.catalog import Catalog, parse_catalog
from shared.analytics.config import (
    AnalyticsConfig,
    ConfigIssue,
    ThreatEntry,
    load_config,
    parse_threat_list,
)
from shared.analytics.enrichment import ServiceTags, parse_service_tags

KQL_DIR: Final = Path(__file__).resolve().parents[2] / "kql"
SAMPLE_DATA: Final = Path(__file__).resolve().parents[1] / "sample" / "data"
SAMPLE_CONFIG: Final = SAMPLE_DATA / "analytics.yaml"


def load_detections(kql_dir: Path = KQL_DIR) -> tuple[Catalog, dict[str, str]]:
    """The catalog and each detection's query body, by id."""
    catalog = parse_catalog((kql_dir / "catalog.yaml").read_text(encoding="utf-8"))
    bodies = {d.id: (kql_dir / d.query).read_text(encoding="utf-8") for d in catalog.detections}
    return catalog, bodies


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: AnalyticsConfig | None
    errors: tuple[ConfigIssue, ...]
    base: Path  # folder relative paths are resolved against

    def path(self, relative: str) -> Path:
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.base / candidate


def load_analytics_config(path: Path | None) -> LoadedConfig:
    """Validate the configuration and read its threat lists; every problem is returned."""
    if path is None:
        return LoadedConfig(AnalyticsConfig(), (), Path.cwd())
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        return LoadedConfig(None, (ConfigIssue("", None, f"cannot read: {err}", source),),
                            path.parent)
    loaded = load_config(text, source)
    result = LoadedConfig(loaded.config, loaded.errors, path.parent)
    if loaded.config is None:
        return result
    errors: list[ConfigIssue] = []
    extra: list[ThreatEntry] = []
    for index, name in enumerate(loaded.config.threat_lists):
        list_path = result.path(name)
        try:
            list_text = list_path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            errors.append(ConfigIssue(f"threat_lists[{index}]", None,
                                      f"cannot read {list_path}: {err}", source))
            continue
        entries, issues = parse_threat_list(list_text, str(list_path))
        extra += entries
        errors += issues
    if loaded.config.service_tags is not None:
        tags_path = result.path(loaded.config.service_tags)
        if not tags_path.is_file():
            errors.append(ConfigIssue("enrichment.service_tags", None,
                                      f"{tags_path} does not exist", source))
    if errors:
        return LoadedConfig(None, tuple(errors), path.parent)
    return LoadedConfig(loaded.config.with_threats(tuple(extra)), (), path.parent)


def load_service_tags(path: Path | None) -> ServiceTags | None:
    """The service-tags JSON, or None when not configured. Raises ValueError when unusable."""
    if path is None:
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"service tags {path}: {err}") from err
    tags = parse_service_tags(document)
    if tags.problems and len(tags.ranges) <= 1:
        raise ValueError(f"service tags {path}: {'; '.join(tags.problems[:3])}")
    return tags
