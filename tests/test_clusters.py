"""The cluster configs in ``clusters/``: they parse, Ray accepts them, and they keep the security rules.

Rules every config keeps (``clusters/README.md``): the project is installed on every node, experiments go
to shared storage passed as ``--storage``, Ray token authentication is on, the dashboard listens on
127.0.0.1 only, and no file holds a secret.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from ddecs_search.config import to_dict
from ddecs_search.spaces import parse_space

CLUSTERS = Path(__file__).resolve().parent.parent / "clusters"
LAUNCHER_CONFIGS = {"aws.yaml": "s3://", "gcp.yaml": "gs://"}  # ray up config -> storage scheme


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


def _env_file_lines(config: dict) -> list[str]:
    """The ``export`` lines the setup commands write to ``~/ddecs.env`` (sourced by every command)."""
    (writer,) = [c for c in config["setup_commands"] if "> ~/ddecs.env" in c]
    return [w for w in shlex.split(writer.split(">", 1)[0])[2:]]


# -- ray up configs (AWS, GCP) ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(LAUNCHER_CONFIGS))
def test_launcher_config_is_accepted_by_ray(name: str) -> None:
    from ray.autoscaler._private.commands import prepare_config

    config = _load(name)
    prepared = prepare_config(config)  # what `ray up` does first: defaults filled in, schema validated
    assert prepared["cluster_name"] == "ddecs-search"
    assert prepared["provider"]["type"] == name.removesuffix(".yaml")
    types = prepared["available_node_types"]
    head = config["head_node_type"]
    assert head in types
    assert types[head]["resources"].get("CPU") == 0, "the head should run no trials"
    workers = {k: v for k, v in types.items() if k != head}
    assert any(t.get("max_workers", 0) > 0 for t in workers.values())
    assert config["worker_start_ray_commands"] and config["head_start_ray_commands"]


@pytest.mark.parametrize("name", sorted(LAUNCHER_CONFIGS))
def test_launcher_config_installs_the_project_on_every_node(name: str) -> None:
    config = _load(name)
    assert config["file_mounts"]["~/ddecs-search"] == ".", "the checkout is copied to every node"
    setup = "\n".join(config["setup_commands"])  # setup_commands run on the head and on every worker
    assert re.search(r"pip install .*-e ~/ddecs-search", setup)
    assert "torch==" in setup
    assert not config["worker_setup_commands"], "a node-type list would replace setup_commands on workers"


@pytest.mark.parametrize("name", sorted(LAUNCHER_CONFIGS))
def test_launcher_config_uses_shared_storage(name: str) -> None:
    env = _env_file_lines(_load(name))
    storage = [line.split("=", 1)[1] for line in env if line.startswith("export DDECS_STORAGE=")]
    assert len(storage) == 1 and storage[0].startswith(LAUNCHER_CONFIGS[name]), env
    readme = (CLUSTERS / "README.md").read_text()
    assert f"ray up -y clusters/{name}" in readme
    assert re.search(
        rf"ray exec --tmux clusters/{name} .*ddecs-search run .*--address auto --storage "
        r'"\$DDECS_STORAGE"',
        readme,
    )
    assert re.search(rf"ray exec --tmux clusters/{name} .*ddecs-search resume .*--address auto", readme)
    assert f"ray down -y clusters/{name}" in readme and f"ray dashboard clusters/{name}" in readme


@pytest.mark.parametrize("name", sorted(LAUNCHER_CONFIGS))
def test_launcher_config_keeps_token_auth_and_a_private_dashboard(name: str) -> None:
    config = _load(name)
    env = _env_file_lines(config)
    assert "export RAY_AUTH_MODE=token" in env
    assert any(line.startswith("export RAY_AUTH_TOKEN_PATH=") for line in env)
    # the token comes from a file on the user's machine, outside the repository
    assert config["file_mounts"]["~/.ray/auth_token"].startswith("~/"), config["file_mounts"]
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all(c.startswith("source ~/ddecs.env") for c in starts), "every ray command needs the token env"
    (head_start,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in (CLUSTERS / name).read_text()


@pytest.mark.parametrize("name", sorted(LAUNCHER_CONFIGS))
def test_launcher_config_opens_ssh_to_the_users_cidr_only(name: str) -> None:
    """No node uses the group/network Ray would create (AWS: SSH from 0.0.0.0/0; GCP: the default network
    with default-allow-ssh from anywhere): every node names the user's own, set up per clusters/README.md."""
    config = _load(name)
    for node_type, spec in config["available_node_types"].items():
        node = spec["node_config"]
        if name == "aws.yaml":
            assert node.get("SecurityGroupIds") == ["YOUR-SECURITY-GROUP-ID"], node_type
        else:
            (iface,) = node["networkInterfaces"]
            assert iface["subnetwork"].endswith("/subnetworks/ddecs-search"), node_type
    readme = (CLUSTERS / "README.md").read_text()
    assert "--cidr YOUR-CIDR" in readme and "--source-ranges=YOUR-CIDR" in readme


def test_no_config_opens_anything_to_the_whole_internet() -> None:
    """A grep over every file under clusters/: no world-open rule (0.0.0.0/0, ::/0) anywhere."""
    for path in sorted(CLUSTERS.iterdir()):
        if path.is_file():
            text = path.read_text()
            assert "0.0.0.0/0" not in text and "::/0" not in text, path.name


def test_no_profiler_gpu_is_declared() -> None:
    """Nothing in the search routes measurements to a `profiler` resource, so no config reserves a GPU
    for one (a reserved GPU would stay idle): measurement happens under the search's lease instead."""
    for path in sorted(CLUSTERS.iterdir()):
        if path.is_file() and path.name != "README.md":
            assert "profiler" not in path.read_text(), path.name


# -- KubeRay ------------------------------------------------------------------------------------------


def _kuberay() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all((CLUSTERS / "kuberay.yaml").read_text()) if d]
    kinds = [d["kind"] for d in docs]
    assert len(set(kinds)) == len(kinds), kinds
    return {d["kind"]: d for d in docs}


def _pod_specs(cluster: dict) -> list[tuple[str, dict, dict]]:
    spec = cluster["spec"]
    groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
    return [(name, group["rayStartParams"], group["template"]["spec"]) for name, group in groups]


def test_kuberay_manifest_structure() -> None:
    docs = _kuberay()
    assert set(docs) == {"PersistentVolumeClaim", "RayCluster"}, "no Secret, no extra Service in the repo"
    cluster = docs["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1" and cluster["metadata"]["name"] == "ddecs-search"
    assert cluster["spec"]["rayVersion"].startswith("2.60")
    assert cluster["spec"]["workerGroupSpecs"], "needs worker groups"
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_kuberay_keeps_token_auth_and_a_private_dashboard() -> None:
    cluster = _kuberay()["RayCluster"]
    assert cluster["spec"]["authOptions"]["mode"] == "token"
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    text = (CLUSTERS / "kuberay.yaml").read_text()
    assert "0.0.0.0" not in text and "LoadBalancer" not in text.split("#")[0]
    for _, _, pod in _pod_specs(cluster):
        for container in pod["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            assert not names & {"RAY_AUTH_TOKEN", "RAY_AUTH_MODE"}, "the operator sets these (authOptions)"


def test_kuberay_installs_the_project_and_shares_storage() -> None:
    pvc, cluster = _kuberay()["PersistentVolumeClaim"], _kuberay()["RayCluster"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    dockerfile = (CLUSTERS / "Dockerfile").read_text()
    assert re.search(r"^FROM rayproject/ray:2\.60\.\d+-py3\d+-gpu$", dockerfile, re.M)
    assert re.search(r"pip install .*/home/ray/ddecs-search", dockerfile)
    images = set()
    for group, _, pod in _pod_specs(cluster):
        claims = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        }
        for container in pod["containers"]:
            images.add(container["image"])
            mounts = {
                m["mountPath"]
                for m in container["volumeMounts"]
                if claims.get(m["name"]) == "ddecs-experiments"
            }
            env = {e["name"]: e.get("value") for e in container["env"]}
            assert mounts == {env["DDECS_STORAGE"]}, f"{group}: experiments volume not at $DDECS_STORAGE"
    assert images == {"YOUR-REGISTRY/ddecs-search:0.1.0"}, "every pod runs the project's image"
    readme = (CLUSTERS / "README.md").read_text()
    assert "docker build -f clusters/Dockerfile" in readme
    assert "kubectl apply -f clusters/kuberay.yaml" in readme
    assert re.search(r"ddecs-search run .*--address auto --storage /mnt/experiments", readme)


# -- the multi-GPU box --------------------------------------------------------------------------------


def _dry_run(*args: str) -> str:
    out = subprocess.run(
        ["bash", str(CLUSTERS / "local-multi-gpu.sh"), *args, "--dry-run"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


def test_local_multi_gpu_gives_every_gpu_to_trials() -> None:
    words = shlex.split(_dry_run("--gpus", "4", "--cpus", "32"))
    assert "RAY_AUTH_MODE=token" in words and "--num-gpus=4" in words and "--head" in words
    assert "--dashboard-host=127.0.0.1" in words and not any("profiler" in w for w in words)


def test_local_multi_gpu_rejects_bad_input() -> None:
    result = subprocess.run(
        ["bash", str(CLUSTERS / "local-multi-gpu.sh"), "--gpus", "x", "--dry-run"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--gpus" in result.stderr


def test_fractional_gpu_resources_are_a_valid_space() -> None:
    quick = CLUSTERS.parent / "search_spaces" / "fashion_mnist_quick.yaml"
    data = to_dict(parse_space(yaml.safe_load(quick.read_text())))
    data["resources"] = {"cpu": 2, "gpu": 0.25}  # the snippet clusters/README.md shows
    assert parse_space(data).resources.gpu == 0.25


# -- no secrets ---------------------------------------------------------------------------------------

_SECRET_PATTERNS = {
    "AWS access key id": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "GCP service-account key": r'"private_key_id"|"type":\s*"service_account"',
    "AWS secret key": r"(?i)aws_secret_access_key\s*[=:]",
    "token value": r"(?i)RAY_AUTH_TOKEN\s*[=:]\s*\S|auth_token\s*[=:]\s*['\"]?[A-Za-z0-9+/]{16}",
    "long hex/base64 string": r"\b[0-9a-f]{32,}\b|\b[A-Za-z0-9+/]{40,}={0,2}",
    "GitHub token": r"\bgh[pousr]_[A-Za-z0-9]{30,}",
}


@pytest.mark.parametrize("path", sorted(p.name for p in CLUSTERS.iterdir() if p.is_file()))
def test_no_secrets_in_cluster_files(path: str) -> None:
    text = (CLUSTERS / path).read_text()
    found = {
        what: m.group(0) for what, pattern in _SECRET_PATTERNS.items() if (m := re.search(pattern, text))
    }
    assert not found, f"clusters/{path} looks like it holds a secret: {found}"


def test_secret_check_can_fail() -> None:
    leaked = "RAY_AUTH_TOKEN=" + "3f" * 32
    assert any(re.search(p, leaked) for p in _SECRET_PATTERNS.values())
    safe = "RAY_AUTH_TOKEN_PATH=$HOME/.ray/auth_token"
    assert not any(re.search(p, safe) for p in _SECRET_PATTERNS.values())


def test_readme_references_existing_files() -> None:
    readme = (CLUSTERS / "README.md").read_text()
    for ref in set(re.findall(r"clusters/([\w.-]+\.(?:yaml|sh|md)|Dockerfile)\b", readme)):
        assert (CLUSTERS / ref).is_file(), f"clusters/README.md mentions clusters/{ref}, which does not exist"
