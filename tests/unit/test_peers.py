"""The peer builds of benchmarks/peers (Argo Rollouts, Flagger): the wrapper module, its replace
directives, the cache layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftrollout_dev.localcluster import NotBuiltError
from ftrollout_dev.peers import ARGO_ROLLOUTS, FLAGGER, copied_replaces, peers, wrapper_gomod

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
    peer = ARGO_ROLLOUTS
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


def test_wrapper_module_requires_the_peer_and_carries_its_replaces() -> None:
    gomod = wrapper_gomod(ARGO_ROLLOUTS, copied_replaces(GOMOD))
    assert "module ftrollout.local/build/argo-rollouts\n" in gomod
    assert "\ngo 1.26.10\n" in gomod
    assert "require github.com/argoproj/argo-rollouts v1.10.2\n" in gomod
    assert "\tk8s.io/api => k8s.io/api v0.34.5\n" in gomod
    # Flagger v1.36.1's go.mod has no replace directive: its wrapper has none either.
    gomod = wrapper_gomod(FLAGGER, "")
    assert "require github.com/fluxcd/flagger v1.36.1\n" in gomod
    assert "\ngo 1.21\n" in gomod
    assert "replace" not in gomod


@pytest.mark.parametrize("name", ["argo-rollouts", "flagger"])
def test_each_peer_has_its_own_cache_and_crds(tmp_path: Path, name: str) -> None:
    peer = peers()[name]
    assert peer.bin_dir(tmp_path) == tmp_path / "bin" / f"{name}-v{peer.version}"
    with pytest.raises(NotBuiltError, match=f"--peer {name}"):
        peer.require(tmp_path)
    d = peer.bin_dir(tmp_path)
    (d / "crds").mkdir(parents=True)
    exe = peer.controller(tmp_path)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    (d / ".complete").write_text("{}\n")
    assert not peer.is_built(tmp_path)  # no CRD copied
    (d / "crds" / "crd.yaml").write_text("kind: CustomResourceDefinition\n")
    assert peer.require(tmp_path) == (exe, d / "crds")
