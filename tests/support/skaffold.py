"""What Skaffold's Helm deployer hands Helm, for tests without skaffold or helm.

Skaffold runs ``helm install -f <valuesFiles>... --set <key>=<value>...``, the
values of ``setValueTemplates`` expanded with the built images. Helm merges the
``-f`` files, then parses each ``--set`` *into* that result (``strvals.ParseInto``):
an index like ``list[0].key`` updates element 0 of a list that the files
defined, keeping its other keys, but when no file defined the list it creates a
new one-element list that later replaces the chart's default list whole
(helm/helm#11734). :func:`helm_values` reproduces that, with Helm's own parser.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

import helm_python
import yaml

from support.helm import ROOT, load_values_files
from support.reference_data import reference_file

SKAFFOLD_YAML = ROOT / "skaffold.yaml"


def load_config() -> dict[str, Any]:
    return yaml.safe_load(SKAFFOLD_YAML.read_text())


def load_schema() -> dict[str, Any]:
    """Skaffold's ``skaffold/v4beta14`` JSON schema, from the reference data."""
    return json.loads(reference_file("skaffold/v4beta14.json").read_text())


def with_profile(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """``config`` with profile ``name``'s JSON patches applied (the only kind we use)."""
    profile = next(p for p in config["profiles"] if p["name"] == name)
    patched = copy.deepcopy(dict(config))
    for patch in profile.get("patches", []):
        *parents, last = [p for p in patch["path"].split("/") if p]
        target: Any = patched
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        assert patch["op"] in {"replace", "add"}, f"unsupported patch {patch}"
        if isinstance(target, list) and last == "-":  # JSON Patch: append
            assert patch["op"] == "add", f"unsupported patch {patch}"
            target.append(copy.deepcopy(patch["value"]))
        elif isinstance(target, list):
            target[int(last)] = patch["value"]
        else:
            target[last] = patch["value"]
    return patched


def image_env_name(image: str) -> str:
    """The suffix Skaffold uses in ``IMAGE_REPO_<x>``/``IMAGE_TAG_<x>`` for ``image``."""
    return re.sub(r"[/\-.:]", "_", image)


def expand_templates(templates: Mapping[str, str], built: Mapping[str, tuple[str, str]]) -> dict:
    """``setValueTemplates`` with ``{{.IMAGE_REPO_x}}``/``{{.IMAGE_TAG_x}}`` filled in."""
    variables = {}
    for image, (repo, tag) in built.items():
        variables[f"IMAGE_REPO_{image_env_name(image)}"] = repo
        variables[f"IMAGE_TAG_{image_env_name(image)}"] = tag

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in variables, f"setValueTemplates uses {{{{.{name}}}}}, no artifact sets it"
        return variables[name]

    return {key: re.sub(r"\{\{\s*\.(\w+)\s*\}\}", fill, value) for key, value in templates.items()}


def _parse_into(base: Any, parsed: Any) -> Any:
    """Merge one parsed ``--set`` into ``base`` the way ``strvals.ParseInto`` does."""
    if isinstance(parsed, dict) and isinstance(base, dict):
        for key, value in parsed.items():
            base[key] = _parse_into(base.get(key), value)
        return base
    if isinstance(parsed, list) and isinstance(base, list):
        merged = list(base)
        for index, item in enumerate(parsed):
            if item is None:  # an index the expression did not touch
                continue
            if index < len(merged):
                merged[index] = _parse_into(merged[index], item)
            else:
                merged.extend([None] * (index - len(merged)) + [item])
        return merged
    return copy.deepcopy(parsed)


def helm_values(release: Mapping[str, Any], sets: Mapping[str, str]) -> dict[str, Any]:
    """User values of ``helm install -f <release.valuesFiles> --set k=v ...``."""
    values = load_values_files(ROOT / path for path in release.get("valuesFiles", []))
    for key, value in sets.items():
        values = _parse_into(values, helm_python.parse_set_string(f"{key}={value}"))
    return values
