"""The pinned Skaffold and the `local` profile, which Skaffold picks from the kube context."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from support.helm import ROOT
from support.skaffold_harness import CONTEXT, global_config, skaffold_command

from localcluster import binaries
from localcluster.components import Layout


@pytest.fixture(scope="module")
def skaffold_config(layout: Layout) -> Path:
    return global_config(layout)


def test_pinned_skaffold_picks_the_local_profile_from_the_kube_context(
    layout: Layout, skaffold_config: Path, tmp_path: Path
) -> None:
    version = skaffold_command(layout, "version").strip()
    assert version == binaries.SKAFFOLD_VERSION
    listed = skaffold_command(layout, "config", "list", f"--kube-context={CONTEXT}")
    assert re.search(r"^local-cluster:\s*true$", listed, re.MULTILINE), listed
    # No -p: Skaffold activates the profile from the kubeconfig's current context.
    effective = yaml.safe_load(skaffold_command(layout, "diagnose", "--yaml-only"))
    [release] = effective["deploy"]["helm"]["releases"]
    assert release["valuesFiles"] == [str(ROOT / "values" / "local.yaml")]  # Skaffold resolves
    assert effective["build"]["local"]["push"] is False
    # Any other context: no profile, the chart's own values file.
    other = yaml.safe_load(layout.kubeconfig.read_text())
    other["contexts"][0]["name"] = other["current-context"] = "other-context"
    other_kubeconfig = tmp_path / "kubeconfig"
    other_kubeconfig.write_text(yaml.safe_dump(other))
    default = yaml.safe_load(
        skaffold_command(layout, "diagnose", "--yaml-only",
                         env={"KUBECONFIG": str(other_kubeconfig)})
    )  # fmt: skip
    [release] = default["deploy"]["helm"]["releases"]
    assert release["valuesFiles"] == [str(ROOT / "charts" / "dagma" / "values.yaml")]
    assert "push" not in default["build"]["local"]  # decided by the context, not a profile
