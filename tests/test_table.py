from zcopy.routes import plan, table


def test_file_to_socket_prefers_sendfile() -> None:
    assert table.order("file", "socket")[0] == "sendfile"


def test_socket_to_file_prefers_splice() -> None:
    assert table.order("socket", "file")[0] == "splice"


def test_file_to_file_is_copy_file_range_then_sendfile() -> None:
    assert table.order("file", "file")[:2] == ("copy_file_range", "sendfile")


def test_every_list_ends_in_readwrite() -> None:
    for key, routes in table.ORDER.items():
        assert routes[-1] == "readwrite", key
    assert table.order("other", "other") == ("readwrite",)


def test_plan_gives_static_reasons() -> None:
    reasons = dict(plan("socket", "socket", route="sendfile"))
    assert "regular file" in (reasons["sendfile"] or "")
    assert dict(plan("socket", "file", route="copy_file_range"))["copy_file_range"]
    assert plan("file", "socket", fallback=False) == [("sendfile", None)]
