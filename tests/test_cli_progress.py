import io

from zcopy.cli.progress import Progress, human_bytes


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 << 30) == "3.0 GiB"


def test_bar_draws_when_enabled_and_ends_the_line() -> None:
    out = io.StringIO()
    bar = Progress("cp big", stream=out, enabled=True)
    bar.update(50, 100)
    bar.update(100, 100)
    bar.close()
    text = out.getvalue()
    assert "cp big" in text and "100.0%" in text and text.endswith("\n")


def test_silent_when_not_a_terminal() -> None:
    out = io.StringIO()  # isatty() is False
    bar = Progress("x", stream=out)
    bar.update(1, 2)
    bar.close()
    assert out.getvalue() == ""
