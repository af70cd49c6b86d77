"""The Argo Rollouts build of benchmarks/peers: the wrapper module's replace directives."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftrollout_dev.localcluster import NotBuiltError
from ftrollout_dev.peers import ArgoRollouts, copied_replaces

GOMOD = """module github.com/argoproj/argo-rollouts

go 1.26.10

require (
\tk8s.io/api v0.34.5 // indirect
)

replace github.com/go-check/check => github.com/go-check/check v0.0.0-20180628173108-788fd7840127

replace (
\t// pinned with the rest of the Kubernetes libraries
\tk8s.io/api => k8s.io/api v0.34.5
\tk8s.io/client-go => k8s.io/client-go v0.34.5 // trailing comment
\tgithub.com/local/thing => ./hack/thing
)
"""


def test_module_replaces_are_copied_and_local_ones_dropped() -> None:
    block = copied_replaces(GOMOD)
    assert block.splitlines() == [
        "replace (",
        "\tgithub.com/go-check/check => github.com/go-check/check "
        "v0.0.0-20180628173108-788fd7840127",
        "\tk8s.io/api => k8s.io/api v0.34.5",
        "\tk8s.io/client-go => k8s.io/client-go v0.34.5",
        ")",
    ]


def test_no_replaces_gives_nothing() -> None:
    assert copied_replaces("module x\n\ngo 1.26\n") == ""


def test_not_built_says_how_to_build(tmp_path: Path) -> None:
    peer = ArgoRollouts()
    assert not peer.is_built(tmp_path)
    with pytest.raises(NotBuiltError, match="ftrollout-dev peers build"):
        peer.require(tmp_path)
    d = peer.bin_dir(tmp_path)
    (d / "crds").mkdir(parents=True)
    (d / "crds" / "rollout-crd.yaml").write_text("kind: CustomResourceDefinition\n")
    exe = peer.controller(tmp_path)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert not peer.is_built(tmp_path)  # no .complete: an interrupted build
    (d / ".complete").write_text("{}\n")
    assert peer.require(tmp_path) == (exe, d / "crds")
