from __future__ import annotations


def test_access_log_escapes_hostile_targets(tmp_path: object) -> None:
    import pathlib

    from zcopy.serve.accesslog import AccessLog

    path = pathlib.Path(str(tmp_path)) / "log"
    log = AccessLog(str(path))
    log.write("1.2.3.4", b"GET", b'/a"\x1b[31m\n127.0.0.1 forged', b"1.1", 404, 0, "none")
    log.close()
    text = path.read_text()
    assert text.count("\n") == 1 and "\x1b" not in text and '\\"' in text
    assert text.startswith("1.2.3.4 - - [") and text.rstrip().endswith('" 404 -')
