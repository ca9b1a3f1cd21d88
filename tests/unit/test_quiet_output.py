"""Quiet by default: build output only when something is built, progress lines on lines of
their own and outside captured output, no escape codes in errors."""

from __future__ import annotations

import pytest

from pytest_dcfire.errors import StartupError, strip_ansi
from pytest_dcfire.runtime.images import BuildSteps

CACHED = [
    "Step 1/3 : FROM debian:bookworm-slim\n",
    " ---> 5f1b2c3d4e5f\n",
    "Step 2/3 : RUN apt-get install -y redis-server\n",
    " ---> Using cache\n",
    " ---> 0a1b2c3d4e5f\n",
    "Step 3/3 : COPY app.py /app.py\n",
    " ---> Using cache\n",
    " ---> 1a1b2c3d4e5f\n",
    "Successfully built 1a1b2c3d4e5f\n",
    "Successfully tagged pytest-dcfire/build:0123456789abcdef\n",
]

# The COPY step changed: the engine runs it (and everything after it) again.
REBUILT = [
    *CACHED[:5],
    "Step 3/3 : COPY app.py /app.py\n",
    " ---> 9f9f9f9f9f9f\n",
    "Successfully built 9f9f9f9f9f9f\n",
]


def _feed(chunks: list[str], verbose: bool = False) -> tuple[BuildSteps, list[str]]:
    shown: list[str] = []
    steps = BuildSteps(shown.append, "building image for db from ./db", "db", verbose)
    for chunk in chunks:
        steps.feed(chunk)
    return steps, shown


def test_a_build_answered_from_the_cache_prints_nothing() -> None:
    steps, shown = _feed(CACHED)
    assert shown == []
    assert not steps.ran


def test_the_first_step_that_runs_prints_the_header_and_every_step_so_far() -> None:
    steps, shown = _feed(REBUILT)
    assert steps.ran
    assert shown == [
        "building image for db from ./db",
        "  db: Step 1/3 : FROM debian:bookworm-slim",
        "  db: Step 2/3 : RUN apt-get install -y redis-server",
        "  db: Step 3/3 : COPY app.py /app.py",
    ]


def test_a_run_step_goes_live_and_later_steps_print_as_they_come() -> None:
    chunks = [
        "Step 1/3 : FROM debian:bookworm-slim\n ---> 5f1b2c3d4e5f\n",
        "Step 2/3 : RUN apt-get install -y redis-server\n",
        " ---> Running in 77aa\n",
        "Reading package lists...\n",
        "Step 3/3 : COPY app.py /app.py\n",
    ]
    _steps, shown = _feed(chunks)
    assert shown[-1] == "  db: Step 3/3 : COPY app.py /app.py"
    assert "Reading package lists..." not in " ".join(shown)  # steps only, not their output


def test_verbose_prints_every_step_even_cached() -> None:
    steps, shown = _feed(CACHED, verbose=True)
    assert not steps.ran
    assert shown[0] == "building image for db from ./db"
    assert [line for line in shown if "Step" in line] == [
        f"  db: {line.strip()}" for line in CACHED if line.startswith("Step")
    ]


def test_build_output_and_startup_errors_carry_no_escape_codes() -> None:
    coloured = "\x1b[31mE: Unable to locate package redis-servr\x1b[0m \x1b]0;title\x07done"
    assert strip_ansi(coloured) == "E: Unable to locate package redis-servr done"
    steps, _ = _feed(["Step 1/1 : RUN \x1b[1mfalse\x1b[0m\n"])
    assert steps.tail == ["Step 1/1 : RUN false"]
    assert "\x1b" not in str(StartupError(f"building the image failed: {coloured}"))


@pytest.mark.parametrize("verbosity", ["", "-q", "-v"])
def test_progress_lines_stay_out_of_captured_output_and_off_pytests_line(
    pytester: pytest.Pytester, verbosity: str
) -> None:
    """Progress from many threads during a test's setup (as when the system starts): each
    line on its own terminal line, none in the test's captured output, and the test's
    letters back on the line of its file."""
    pytester.makeconftest(
        """
        import threading
        import pytest

        @pytest.fixture
        def starting(request):
            progress = request.config.pluginmanager.get_plugin("dcfire-progress")
            def speak(n):
                for i in range(20):
                    progress(f"line {n}-{i}")
            threads = [threading.Thread(target=speak, args=(n,)) for n in range(6)]
            print("setup speaking")
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        """
    )
    pytester.makepyfile(
        test_first="""
        def test_a_letter_first():
            pass

        def test_first(starting):
            print("first test speaking")

        def test_second():
            print("second test speaking")
        """
    )
    result = pytester.runpytest("-rP", "-p", "no:cacheprovider", *filter(None, [verbosity]))
    result.assert_outcomes(passed=3)
    lines = result.outlines
    assert len([line for line in lines if line.startswith("dcfire: line ")]) == 120
    captured, inside = [], False
    for line in lines:
        if line.startswith("-") and "Captured" in line:
            inside = True
        elif line.startswith(("=", "_")):
            inside = False
        elif inside:
            captured.append(line)
    assert "setup speaking" in captured and "first test speaking" in captured
    assert [line for line in captured if "dcfire" in line] == []
    assert not [line for line in lines if "dcfire: line" in line[1:]]  # never mid-line
    if verbosity == "":
        result.stdout.fnmatch_lines(["dcfire: line *", "test_first.py ..*[[]100%[]]"])
        assert "." not in [line.strip() for line in lines]
    elif verbosity == "-v":
        result.stdout.fnmatch_lines(["dcfire: line *", "test_first.py::test_first PASSED*"])
        assert "" not in lines[lines.index("test_first.py::test_first ") + 1 :][:120]
