"""A real multi-node Ray cluster on 127.0.0.1, for tests: a head and worker nodes as process sessions.

Each node is one ``ray start --block`` process started in a session of its own. The session holds the
node's raylet, its agents and its Ray workers (the trials): the raylet starts each worker in a process
group of its own, but inside the node's session. A test ends a node by signalling the processes of
that session and never calls ``ray stop`` (which would end every Ray process of the user, other tests'
included).

Loopback only (see ``shared/ray-notes.md``): Ray 2.60 rewrites 127.0.0.1 to the outward interface
address. The head and drivers turn that off with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``; a worker node
cannot (``ray start --address`` then refuses to join), so it is started through a tiny launcher that
replaces ``ray._private.services.resolve_ip_for_localhost`` with the identity before Ray's own CLI runs.

Token authentication stays on by default, with a fresh token in the cluster's own folder
(``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN_PATH`` for every node and driver), as on a real cluster.

Also a small command line that measures a search on 1 vs N loopback nodes (docs/scaling.md)::

    .venv/bin/python tests/_ray_cluster.py measure tests/spaces/tiny_multinode.yaml --nodes 1 2 \
        --num-samples 8 --max-concurrent 2
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
_BIN = Path(sys.executable).parent
# Ray's CLI with the localhost rewrite turned into the identity (for nodes joining a loopback head).
_LAUNCHER = (
    "import sys; import ray._private.services as s; s.resolve_ip_for_localhost = lambda host: host; "
    "from ray.scripts.scripts import main; sys.argv = ['ray'] + sys.argv[1:]; sys.exit(main())"
)
_READY = "Ray runtime started"
_NODES = "ddecs-nodes: "  # the node table's line in a short driver's stdout (Ray prints there too)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class RayNode:
    """One ``ray start --block`` process; its pid is also the id of the node's session."""

    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def sid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list[int]:
        """Live processes of this node: its session (raylet, agents and the Ray workers, which the raylet
        starts in process groups of their own but inside the node's session)."""
        return session_pids(self.sid)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class LoopbackCluster:
    """A head plus worker nodes on 127.0.0.1, each started in a session of its own.

    Args:
        root: a folder for the nodes' logs and the token file. Ray's own temp dir is a separate short
            ``/tmp/ddr*`` folder (its Unix socket paths must stay under 108 bytes), removed on shutdown.
        auth: ``"token"`` (default, a fresh token file under ``root``) or ``"disabled"``.
        extra_env: added to every node's and driver's environment (e.g. ``DDECS_CACHE``).
    """

    root: Path
    auth: str = "token"
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    nodes: list[RayNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ddr", dir="/tmp"))
        self._base_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self._base_env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1", **self.extra_env)
        if self.auth == "token":
            token = self.root / "auth_token"
            token.write_text(secrets.token_hex(32))
            token.chmod(0o600)
            self._base_env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
        elif self.auth == "disabled":
            self._base_env["RAY_AUTH_MODE"] = "disabled"
        else:
            raise ValueError(f"auth must be 'token' or 'disabled', got {self.auth!r}")

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a driver (``ddecs-search run --address ...``) of this cluster."""
        return {**self._base_env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

    # -- nodes ---------------------------------------------------------------------------------------

    def start_head(
        self, *, num_cpus: float = 1, resources: dict[str, float] | None = None, timeout: float = 90
    ) -> RayNode:
        args = [
            str(_BIN / "ray"),
            "start",
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            f"--temp-dir={self.temp_dir}",
        ]
        return self._start("head", args, self.env, num_cpus, resources, timeout)

    def add_worker(
        self, *, num_cpus: float = 1, resources: dict[str, float] | None = None, timeout: float = 90
    ) -> RayNode:
        if not self.nodes or not self.nodes[0].alive():
            raise RuntimeError("start the head before adding worker nodes")
        args = [sys.executable, "-c", _LAUNCHER, "start", f"--address={self.address}"]
        name = f"worker{len(self.nodes)}"
        return self._start(name, args, self._base_env, num_cpus, resources, timeout)

    def _start(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        num_cpus: float,
        resources: dict[str, float] | None,
        timeout: float,
    ) -> RayNode:
        args = [
            *args,
            "--block",
            f"--node-ip-address={LOOPBACK}",
            f"--num-cpus={num_cpus}",
            "--num-gpus=0",
            f"--dashboard-agent-listen-port={free_port()}",
            "--object-store-memory=200000000",
        ]
        if resources:
            args.append(f"--resources={json.dumps(resources)}")
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        node = RayNode(name, proc, log)
        self.nodes.append(node)
        deadline = time.monotonic() + timeout
        while _READY not in log.read_text(errors="replace"):
            if not node.alive() or time.monotonic() > deadline:
                self.kill(node)
                raise RuntimeError(f"Ray node {name} did not start in {timeout:.0f} s:\n{node.log_tail()}")
            time.sleep(0.2)
        return node

    def kill(self, node: RayNode) -> None:
        """SIGKILL every process of the node at once: a machine lost without warning."""
        kill_session(node.sid)
        node.proc.wait(timeout=30)

    def stop(self, node: RayNode, timeout: float = 15) -> None:
        """End a node cleanly: SIGTERM to ``ray start`` alone (~3 s), then SIGKILL what is left."""
        if node.alive():
            node.proc.terminate()
            try:
                node.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill(node)

    def shutdown(self) -> None:
        """Stop every node, workers first, and remove Ray's temp dir."""
        for node in reversed(self.nodes):
            self.stop(node)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- queries -------------------------------------------------------------------------------------

    def node_table(self, timeout: float = 60) -> list[dict]:
        """``ray.nodes()`` as seen by a short driver: NodeID, Alive, Resources per node."""
        code = (
            f"import json, ray; ray.init(address={self.address!r}, log_to_driver=False); "
            "keys = ('NodeID', 'Alive', 'Resources'); "
            f"print({_NODES!r} + json.dumps([{{k: n[k] for k in keys}} for n in ray.nodes()]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
        # Ray may print to stdout after it (seen: "raylet has lagging heartbeats" once a node was killed)
        (line,) = [ln for ln in out.splitlines() if ln.startswith(_NODES)]
        return json.loads(line[len(_NODES) :])


def session_pids(sid: int) -> list[int]:
    """Live (not zombie) processes of session ``sid`` (one started with ``start_new_session=True``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            pids.append(int(entry.name))
    return pids


def kill_session(sid: int, timeout: float = 15) -> None:
    """SIGKILL every process of session ``sid`` until none is left (only sessions this module started)."""
    deadline = time.monotonic() + timeout
    while (pids := session_pids(sid)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


# -- trials per minute of one search on 1..N loopback nodes (docs/scaling.md) -------------------------


def measure(space: str, nodes: int, *, cpus_per_node: float = 1, extra: tuple[str, ...] = ()) -> dict:
    """Run ``ddecs-search run SPACE`` on a fresh loopback cluster of ``nodes`` nodes; wall time and rate.

    The clock runs from the command's start to its exit: Ray connection, the shared baseline, every
    trial, the trials table (the cluster itself is started before the clock).
    """
    import pandas as pd

    root = Path(tempfile.mkdtemp(prefix="ddmeasure"))
    try:
        with LoopbackCluster(root / "cluster", extra_env={"DDECS_CACHE": str(root / "cache")}) as cluster:
            cluster.start_head(num_cpus=cpus_per_node)
            for _ in range(nodes - 1):
                cluster.add_worker(num_cpus=cpus_per_node)
            cmd = [
                str(_BIN / "ddecs-search"),
                "run",
                space,
                "--name",
                "m",
                "--storage",
                str(root / "exp"),
                "--address",
                cluster.address,
                "--quiet",
                "--no-verify",
                *extra,
            ]
            start = time.monotonic()
            subprocess.run(cmd, env=cluster.env, check=True, stdout=subprocess.DEVNULL)
            wall = time.monotonic() - start
        trials = pd.read_csv(root / "exp" / "m" / "trials.csv")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    done = trials[trials["state"] == "TERMINATED"]
    return {
        "nodes": nodes,
        "cpus_per_node": cpus_per_node,
        "trials": len(done),
        "wall_s": round(wall, 1),
        "trials_per_min": round(60 * len(done) / wall, 2),
        "nodes_used": int(done["node_id"].nunique()),
        "mean_trial_s": round(float(done["trial_wall_s"].mean()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Trials per minute of a search on 1..N loopback Ray nodes.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="one search per node count, JSON lines on stdout")
    m.add_argument("space")
    m.add_argument("--nodes", type=int, nargs="+", default=[1, 2])
    m.add_argument("--cpus-per-node", type=float, default=1)
    m.add_argument("--repeat", type=int, default=1)
    args, extra = parser.parse_known_args(argv)  # the rest goes to `ddecs-search run`
    for _ in range(args.repeat):
        for n in args.nodes:
            result = measure(args.space, n, cpus_per_node=args.cpus_per_node, extra=tuple(extra))
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
