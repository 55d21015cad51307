"""CLI conventions a newcomer relies on: --version, an example under every verb's --help that parses,
exit codes in --help and the README, --quiet/--verbose, and the progress helpers' ETA and lines."""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path

import pytest

from ddecs_search.cli import main
from ddecs_search.cli._main import EXIT_CODES, build_parser
from ddecs_search.search._progress import VERBOSITY_NORMAL, EpochsBar, TrialsBar, format_eta

ROOT = Path(__file__).resolve().parents[1]


def _verbs() -> dict:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "verb"]
    return sub.choices


def test_version_matches_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    version = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
    assert capsys.readouterr().out.strip() == f"ddecs-search {version}"


@pytest.mark.parametrize("verb", sorted(_verbs()))
def test_every_verb_shows_an_example_that_parses(verb):
    help_text = _verbs()[verb].format_help()
    match = re.search(r"example:\n  (ddecs-search .+)", help_text)
    assert match, f"`ddecs-search {verb} --help` has no example"
    argv = shlex.split(match.group(1))[1:]
    assert argv[0] == verb
    args = build_parser().parse_args(argv)  # exits 2 if the example were not valid
    assert args.verb == verb


def test_exit_codes_are_listed_in_help_and_readme(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    readme = (ROOT / "README.md").read_text()
    for code, meaning in EXIT_CODES:
        assert re.search(rf"^\s+{code}\s+{re.escape(meaning)}$", text, flags=re.M), (code, text)
        assert re.search(rf"^\| `?{code}`? \| .+ \|$", readme, flags=re.M), f"README lacks exit code {code}"
    for verb in ("run", "resume"):
        assert "exit codes:" in _verbs()[verb].format_help()


def test_quiet_and_verbose_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "space.yaml", "--quiet", "--verbose"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_resume_if_exists_needs_a_name(capsys):
    space = ROOT / "tests" / "spaces" / "tiny.yaml"
    assert main(["run", str(space), "--resume-if-exists", "--quiet"]) == 2
    assert "--resume-if-exists needs --name" in capsys.readouterr().err


def test_eta_counts_only_this_sessions_trials(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("ddecs_search.search._progress.time.time", lambda: clock[0])
    bar = TrialsBar(10, 4, verbosity=VERBOSITY_NORMAL, stream=io.StringIO())  # 4 done before a resume
    assert not bar.drawn and bar.eta_s() is None and format_eta(None) == "ETA --"
    clock[0] += 60.0
    bar.update(6)  # 2 trials in 60 s -> 4 left take 120 s
    assert bar.eta_s() == pytest.approx(120.0)
    assert format_eta(bar.eta_s()) == "ETA 2 min 00 s" and format_eta(42.4) == "ETA 42 s"
    bar.close()


def test_epochs_show_as_lines_off_a_terminal(capsys):
    bar = EpochsBar(3, "baseline lenet", quiet=False, stream=io.StringIO())
    bar.epoch(1, 0.5)
    bar.epoch(3, 0.25)
    bar.close()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("baseline lenet: epoch 1/3, loss 0.5000 (")
    assert lines[1].startswith("baseline lenet: epoch 3/3, loss 0.2500 (") and "ETA 0 s" in lines[1]
    quiet = EpochsBar(3, "baseline lenet", quiet=True, stream=io.StringIO())
    quiet.epoch(1, 0.5)
    assert capsys.readouterr().out == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_shows_done_total_front_and_keeps_lines_above(capsys):
    screen = _Terminal()
    bar = TrialsBar(10, 0, verbosity=VERBOSITY_NORMAL, stream=screen)
    assert bar.drawn
    bar.update(3, front=2, running=2, failed=0)
    bar.write("trial abc done")
    bar.close()
    drawn = screen.getvalue()
    assert "trials:" in drawn and "3/10" in drawn and "front=2" in drawn and "running=2" in drawn
    assert "trial abc done" in capsys.readouterr().out
    quiet = TrialsBar(10, 0, verbosity=0, stream=_Terminal())
    quiet.write("nothing")
    assert not quiet.drawn and capsys.readouterr().out == ""
