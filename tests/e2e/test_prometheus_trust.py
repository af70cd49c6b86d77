"""The operator's Prometheus client against a real Prometheus serving TLS (self-signed CA) and
basic auth from its `--web.config.file`: certificates verified by default, a CA bundle and
credentials from the operator's configuration, failures reported as a short reason.

Only Prometheus runs here (no control plane): a few seconds.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from ftrollout.model import api
from ftrollout.shell.prometheus_config import PrometheusConfig, from_args
from ftrollout.shell.runner import add_arguments
from ftrollout.shell.scheduler import AnalysisTarget, Prometheus, QueryError, Scheduler
from ftrollout.shell.state import State
from ftrollout_dev.localcluster import find_prometheus, free_port

pytestmark = pytest.mark.skipif(
    find_prometheus() is None or shutil.which("openssl") is None,
    reason="needs the prometheus binary and openssl",
)

with warnings.catch_warnings():
    # bcrypt through libxcrypt ($2b$): neither `bcrypt` nor `htpasswd` is installed here.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

USER, PASSWORD = "ftrollout", "correct horse battery staple"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca_and_cert(d: Path, name: str) -> None:
    """`name`-ca.crt (a CA) and `name`.crt/.key (127.0.0.1, signed by it)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.crt",
            "-days", "1", "-subj", f"/CN={name} test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign", cwd=d)  # fmt: skip
    openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=127.0.0.1",
            cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{name}-ca.crt", "-CAkey",
            f"{name}-ca.key", "-CAcreateserial", "-out", f"{name}.crt", "-days", "1",
            "-extfile", "ext.cnf", cwd=d)  # fmt: skip


@dataclass
class SecurePrometheus:
    url: str
    ca: Path
    other_ca: Path  # a CA that did not sign the server's certificate


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePrometheus]:
    d = tmp_path_factory.mktemp("secure-prom")
    make_ca_and_cert(d, "server")
    make_ca_and_cert(d, "other")
    web = {
        "tls_server_config": {
            "cert_file": str(d / "server.crt"),
            "key_file": str(d / "server.key"),
        },
        "basic_auth_users": {USER: crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))},
    }
    (d / "web.yml").write_text(yaml.safe_dump(web))
    (d / "prometheus.yml").write_text(yaml.safe_dump({"global": {"scrape_interval": "1m"}}))
    port = free_port()
    binary = find_prometheus()
    assert binary is not None
    log = (d / "prometheus.log").open("ab")
    proc = subprocess.Popen(
        [str(binary), f"--config.file={d / 'prometheus.yml'}",
         f"--storage.tsdb.path={d / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         f"--web.config.file={d / 'web.yml'}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=d,
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (d / "prometheus.log").read_text()[-2000:]
            try:
                r = requests.get(
                    f"{url}/-/ready", verify=str(d / "server-ca.crt"), auth=(USER, PASSWORD)
                )
                if r.status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "prometheus not ready"
            time.sleep(0.2)
        yield SecurePrometheus(url, d / "server-ca.crt", d / "other-ca.crt")
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def config(*argv: str) -> PrometheusConfig:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return from_args(p.parse_args(list(argv)))


def basic_auth_dir(tmp_path: Path, user: str = USER, password: str = PASSWORD) -> Path:
    d = tmp_path / "basic"
    d.mkdir()
    (d / "username").write_text(user)
    (d / "password").write_text(password + "\n")  # as a hand-made Secret often has it
    return d


async def ask(cfg: PrometheusConfig, url: str) -> list[dict[str, object]]:
    return await Prometheus(workers=1, config=cfg).query(url, "vector(42)", 5.0)


# ------------------------------------------------------------------------------------ TLS


async def test_tls_with_the_configured_ca_is_accepted(
    prometheus: SecurePrometheus, tmp_path: Path
) -> None:
    auth = f"--prometheus-basic-auth={prometheus.url}={basic_auth_dir(tmp_path)}"
    cfg = config(f"--prometheus-ca-file={prometheus.url}={prometheus.ca}", auth)
    (series,) = await ask(cfg, prometheus.url)
    assert series["value"][1] == "42"  # type: ignore[index]


async def test_tls_without_the_ca_is_rejected_with_a_short_reason(
    prometheus: SecurePrometheus, tmp_path: Path
) -> None:
    auth = f"--prometheus-basic-auth={prometheus.url}={basic_auth_dir(tmp_path)}"
    for cfg in (
        config(auth),  # system CAs only
        config(f"--prometheus-ca-file={prometheus.other_ca}", auth),  # the wrong CA
    ):
        with pytest.raises(QueryError) as exc:
            await ask(cfg, prometheus.url)
        assert str(exc.value) == (
            f"prometheus {prometheus.url}: TLS handshake failed (certificate not verified?)"
        )


async def test_a_rejected_certificate_makes_the_round_inconclusive_not_a_crash(
    prometheus: SecurePrometheus, tmp_path: Path
) -> None:
    analysis = api.Analysis.model_validate(
        {"metrics": [{"name": "errors", "query": "vector(0)", "threshold": {"max": 1}}]}
    )
    sched = Scheduler(State(), prom=Prometheus(workers=1, config=config()))
    rnd = await sched.analyse(
        AnalysisTarget("shop", "web", "web", "web-ft", analysis, prometheus.url)
    )
    (result,) = rnd.results
    assert result.phase == "Inconclusive"
    assert result.message.endswith("TLS handshake failed (certificate not verified?)")
    assert "Traceback" not in result.message
    assert len(result.message) < 200


async def test_skipping_verification_is_an_explicit_opt_in(
    prometheus: SecurePrometheus, tmp_path: Path
) -> None:
    auth = f"--prometheus-basic-auth={prometheus.url}={basic_auth_dir(tmp_path)}"
    (series,) = await ask(config("--prometheus-insecure-skip-verify", auth), prometheus.url)
    assert series["value"][1] == "42"  # type: ignore[index]


# ----------------------------------------------------------------------------- basic auth


@pytest.mark.parametrize("reuse", [False, True])
async def test_basic_auth_from_the_operators_files_and_a_rotated_password_is_picked_up(
    prometheus: SecurePrometheus, tmp_path: Path, reuse: bool
) -> None:
    """`reuse`: the guardrail's requests are prepared once; credentials are added per copy."""
    creds = basic_auth_dir(tmp_path, password="not the password")
    cfg = config(
        f"--prometheus-ca-file={prometheus.ca}", f"--prometheus-basic-auth={prometheus.url}={creds}"
    )
    prom = Prometheus(workers=1, config=cfg)
    with pytest.raises(QueryError) as exc:
        await prom.query(prometheus.url, "vector(42)", 5.0, reuse=reuse)
    assert str(exc.value) == f"prometheus {prometheus.url}: HTTP 401 Unauthorized"
    (creds / "password").write_text(PASSWORD)  # the Secret rotated; same client, no restart
    (series,) = await prom.query(prometheus.url, "vector(42)", 5.0, reuse=reuse)
    assert series["value"][1] == "42"  # type: ignore[index]


async def test_without_credentials_the_answer_is_401_and_nothing_more(
    prometheus: SecurePrometheus,
) -> None:
    with pytest.raises(QueryError) as exc:
        await ask(config(f"--prometheus-ca-file={prometheus.ca}"), prometheus.url)
    assert str(exc.value) == f"prometheus {prometheus.url}: HTTP 401 Unauthorized"
