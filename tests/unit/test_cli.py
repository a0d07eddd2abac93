"""The CLI's contract: help without heavy imports, one-line errors, exit codes."""

import argparse
import subprocess
import sys

import pytest

from ci.cli import build_parser as ci_parser
from machine_learning.cli import build_parser as training_parser
from machine_learning.contract.arguments import nonblank_name
from tests.conftest import cli_env, run_cli


def test_help_lists_the_commands_and_imports_nothing_heavy(tmp_path):
    done = run_cli("--help", cwd=tmp_path)
    assert done.returncode == 0 and "train" in done.stdout and "compare" in done.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from machine_learning.cli import build_parser; "
            "build_parser().format_help(); "
            "heavy = ('mlflow', 'xgboost', 'pandas', 'sklearn', 'sqlalchemy'); "
            "print(sorted(m for m in heavy if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["train", "compare"])
def test_command_help_shows_defaults_and_choices(command, tmp_path):
    done = run_cli(command, "--help", cwd=tmp_path)
    assert done.returncode == 0
    for text in (
        "--dataset-version {v1,v2}",
        "--scenario-type {random,balanced}",
        "(default: 20000)",
        "exit codes",
    ):
        assert text in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--model", "svm"],
            "argument --model: expected one of xgboost, random_forest, logistic_regression, "
            "got 'svm'",
        ),
        (["train", "--dataset-version", "v3"], "--dataset-version: expected one of v1, v2, got"),
        (["train", "--n-battles", "0"], "argument --n-battles: must be greater than 0, got 0"),
        (["train", "--n-battles", "-3"], "must be greater than 0, got -3"),
        (["train", "--n-battles", "many"], "expected a whole number, got 'many'"),
        (["compare", "--scenario-type", "chaos"], "--scenario-type: expected one of random,"),
        (["deploy"], "invalid choice: 'deploy'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_unwritable_output_dir_is_refused_before_any_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = run_cli("train", "--output-dir", str(blocker / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: argument --output-dir: cannot write to {blocker / 'out'}: Not a directory; "
        "choose a writable folder (see python -m machine_learning train --help)"
    ]


def test_unreachable_server_in_ci_fails_fast_with_one_line(tmp_path):
    done = run_cli(
        "train",
        "--tracking-uri",
        "http://127.0.0.1:9",
        "--output-dir",
        "out",
        cwd=tmp_path,
        env=cli_env(CI="true"),
    )
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [
        "error: tracking server http://127.0.0.1:9 (from --tracking-uri) does not answer on "
        "/health; start it or point --tracking-uri at a running server"
    ]
    assert not (tmp_path / "mlflow.db").exists()


def _commands(parser):
    """Every (sub)command parser, nested ones (``thresholds set``) included."""
    for action in parser._actions:  # argparse has no public API for its subparsers
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _commands(sub)


@pytest.mark.parametrize("build", [training_parser, ci_parser], ids=["machine_learning", "ci"])
def test_every_option_has_help_and_shows_its_default_once(build):
    for command in [build(), *_commands(build())]:
        text = command.format_help()
        assert "(default: None)" not in text, command.prog
        for action in command._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{command.prog} {action.option_strings[0]} has no help"
                shown = command._get_formatter()._expand_help(action)
                assert shown.count("default") <= 1, f"{command.prog}: {shown}"


# Every option that names something (a model, an experiment, a branch, a label, a login, a
# commit): an empty or multi-line value is bad input, caught while parsing. (``thresholds set
# METRIC`` is checked against the metrics the gate computes, a stricter test.)
NAME_OPTIONS = {
    "--model-name",
    "--experiment",
    "--version",
    "--branch",
    "--author",
    "--repo",
    "--sha",
    "--head-sha",
    "--expect-champion",
    "--expect-version",
    "--model-uri",
}


@pytest.mark.parametrize("build", [training_parser, ci_parser], ids=["machine_learning", "ci"])
def test_every_name_like_option_is_checked_as_a_name(build):
    seen = set()
    for command in [build(), *_commands(build())]:
        for action in command._actions:
            named = NAME_OPTIONS.intersection(action.option_strings)
            if named:
                assert action.type is nonblank_name, f"{command.prog} {action.option_strings}"
                seen |= named
    assert seen, "no name-like option found"


# (cli, the command's other arguments, the option): one case per option and command kind
NAME_CASES = [
    ("ci", ["promote"], "--model-name"),
    ("ci", ["promote"], "--sha"),
    ("ci", ["gate", "--run-id", "0" * 32], "--model-name"),
    ("ci", ["thresholds", "set", "test_f1", "--threshold", "0.9"], "--model-name"),
    ("ci", ["rollback"], "--expect-champion"),
    ("ci", ["verify"], "--expect-version"),
    ("ci", ["state", "save"], "--branch"),
    ("ci", ["comment", "--body", "r.md"], "--repo"),
    ("ci", ["comment", "--body", "r.md"], "--author"),
    ("ci", ["comment", "--body", "r.md"], "--sha"),
    ("ci", ["comment", "--artifact-dir", "a"], "--head-sha"),
    ("ml", ["train"], "--experiment"),
    ("ml", ["compare"], "--version"),
    ("ml", ["predict", "pikachu", "charizard"], "--model-uri"),
    ("ml", ["serve"], "--model-uri"),
]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "must not be empty"),
        ("  ", "must not be empty"),
        ("main\nx", "U+000A"),
        ("a\x00b", "U+0000"),
        ("m" * 257, "at most 256"),
    ],
)
@pytest.mark.parametrize(("cli", "command", "option"), NAME_CASES)
def test_a_blank_or_multi_line_name_is_refused_while_parsing(
    cli, command, option, value, says, capsys
):
    build = ci_parser if cli == "ci" else training_parser
    with pytest.raises(SystemExit) as exit_:
        build().parse_args([*command, f"{option}={value}"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2
    assert line.startswith(f"error: argument {option}: ") and says in line


def test_a_name_is_stripped_and_otherwise_kept():
    args = ci_parser().parse_args(["promote", "--model-name", "  pokemon battle v2 "])
    assert args.model_name == "pokemon battle v2"
    assert training_parser().parse_args(["train", "--experiment", "é-實驗"]).experiment == "é-實驗"


def actions_on(tmp_path, ref: str, **extra: str) -> dict[str, str]:
    """A GitHub Actions environment on ``ref`` of a repository whose default branch is main."""
    event = tmp_path / "event.json"
    event.write_text('{"repository": {"full_name": "octo/battles", "default_branch": "main"}}')
    return cli_env(GITHUB_ACTIONS="true", GITHUB_REF=ref, GITHUB_EVENT_PATH=str(event), **extra)


@pytest.mark.parametrize(
    ("ref", "shown"), [("refs/heads/Main", "Main"), ("refs/tags/v1", "refs/tags/v1")]
)
def test_promote_under_actions_refuses_anything_but_exactly_the_default_branch(
    tmp_path, ref, shown
):
    """GitHub's expressions compare ignoring case, so the workflow's guard lets `Main` through;
    the command decides case-sensitively, before it reads a file or contacts a server."""
    env = actions_on(tmp_path, ref, MLFLOW_TRACKING_URI="http://127.0.0.1:9")
    done = run_cli("promote", cwd=tmp_path, env=env, module="ci")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: promotion is for the default branch `main` only; this run is on `{shown}`"
    ]


def test_promote_on_the_default_branch_or_outside_actions_goes_on_to_its_inputs(tmp_path):
    for env in (actions_on(tmp_path, "refs/heads/main"), cli_env(GITHUB_REF="refs/heads/Main")):
        done = run_cli("promote", "--gate-json", "absent.json", cwd=tmp_path, env=env, module="ci")
        assert done.returncode == 2 and "absent.json" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("ref", "expected"),
    [("refs/heads/main", "true"), ("refs/heads/Main", "false"), ("refs/heads/main-x", "false")],
)
def test_server_mode_tells_the_workflow_whether_this_is_the_default_branch(tmp_path, ref, expected):
    output = tmp_path / "github_output"
    env = actions_on(tmp_path, ref, GITHUB_OUTPUT=str(output))
    done = run_cli("server-mode", cwd=tmp_path, env=env, module="ci")
    assert done.returncode == 0, done.stderr
    assert f"default-branch={expected}\n" in output.read_text()


@pytest.mark.parametrize(
    ("command", "variable"), [("verify", "PREDICTOR_URL"), ("monitor", "INFERENCE_LOG_URL")]
)
def test_help_never_prints_a_url_taken_from_the_environment(command, variable, tmp_path):
    """Defaults read from the environment may hold credentials; --help says where they come
    from, not what they are."""
    url = "http://user:s3cret-in-url@127.0.0.1:8000"
    done = run_cli(command, "--help", cwd=tmp_path, module="ci", env=cli_env(**{variable: url}))
    assert done.returncode == 0 and f"${variable}" in done.stdout
    assert "s3cret" not in done.stdout + done.stderr
