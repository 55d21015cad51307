"""One line that names a configuration, for fronts, reports and logs.

Fronts are read by people who deploy them: a row must say which configuration it is (exit points by
the backbone's own names, the branches, the training mode, the policy and its λ) without opening the
trial folder. The line is written once, by the evaluation that measured the configuration.
"""

from __future__ import annotations

from collections.abc import Sequence

from ddecs_search.config._candidate import BranchSpec, Candidate


def exit_names(candidate: Candidate, exit_point_names: Sequence[str]) -> str:
    """``"conv1+conv2"``: the candidate's exit points by the backbone's names."""
    return "+".join(str(exit_point_names[p]) for p in candidate.exit_points)


def describe_branch(spec: BranchSpec) -> str:
    """``"2xconv32 max2 fc64"``: a branch spec in a few characters."""
    parts = [f"{spec.conv_layers}xconv{spec.channels}"] if spec.conv_layers else []
    parts.append(f"{spec.pool}{spec.pool_size}")
    parts.append(f"fc{spec.hidden}" if spec.hidden else "fc")
    if spec.dropout:
        parts.append(f"drop{spec.dropout:g}")
    return " ".join(parts)


def describe_candidate(candidate: Candidate, exit_point_names: Sequence[str]) -> str:
    """``"conv1+conv2 | avg4 fc; 1xconv32 avg2 fc | frozen 2ep | threshold λ=0.1"``."""
    branches = "; ".join(describe_branch(b) for b in candidate.branches)
    t, p = candidate.training, candidate.policy
    distill = f" kd{t.distill:g}" if t.distill else ""
    return (
        f"{exit_names(candidate, exit_point_names)} | {branches} | {t.mode} {t.epochs}ep{distill} | "
        f"{p.kind} λ={p.cost_weight:.3g}"
    )


def describe_static(backbone: str) -> str:
    """The static network's line: what every configuration is compared with."""
    return f"static {backbone} (no early exit)"
