"""Partial files as disk space (issue #20): a full disk names the partial that holds the space, `recv
--clean-partials` and a session without --resume give it back, and no empty partial is left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from zcopy.transfer import RemoteError, send
from zcopy.transfer import checksum as ck
from zcopy.transfer import partials as pt
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_NOSPACE
from zcopy.transfer.names import partial_name

from .conftest import ZCOPY, RawSender, partials


def test_disk_full_names_the_partial_and_a_send_without_resume_gives_it_back(tmp_path: Path, start_receiver,  # type: ignore[no-untyped-def]
                                                                             tiny_fs: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))  # more than the 1 MiB file system holds
    rx = start_receiver(tiny_fs)
    with pytest.raises(RemoteError, match="no space left"):
        send([big], rx.address)
    rx.join()
    [kept] = partials(tiny_fs)
    # Another file now fails too, and the error says which partial holds the space and how to drop it.
    other = tmp_path / "other.bin"
    other.write_bytes(os.urandom(600 << 10))
    rx = start_receiver(tiny_fs)
    with pytest.raises(RemoteError, match="no space left") as info:
        send([other], rx.address)
    assert info.value.code == E_NOSPACE
    message = str(info.value)
    assert "partial files kept for --resume hold" in message and kept.name in message
    assert "--clean-partials" in message
    assert rx.join().error_code == E_NOSPACE
    # The same sender again, without --resume: the old partial of big.bin goes before any body arrives, so a
    # smaller big.bin now fits.
    big.write_bytes(os.urandom(300 << 10))
    rx = start_receiver(tiny_fs)
    assert send([big], rx.address).ok
    rx.join()
    assert (tiny_fs / "big.bin").read_bytes() == big.read_bytes()
    assert not kept.exists()


def test_clean_partials_removes_what_no_session_holds(tmp_path: Path) -> None:
    from zcopy import FileChannel

    dst = tmp_path / "dst"
    (dst / "a" / "b").mkdir(parents=True)
    loose = dst / "a" / "b" / partial_name(b"x.bin").decode()
    loose.write_bytes(b"x" * 100_000)
    top = dst / partial_name(b"y.bin").decode()
    top.write_bytes(b"y" * 10)
    held = dst / partial_name(b"held.bin").decode()
    held.write_bytes(b"h" * 10)
    mine = dst / "a" / "regular.zcopy-part"  # not a partial's name (no leading dot): a user's file
    mine.write_bytes(b"mine")
    ch = FileChannel(os.open(held, os.O_RDWR), own=True)  # as a running session holds its partial
    recv = subprocess.Popen([*ZCOPY, "recv", str(dst), "--listen", "127.0.0.1:0", "--no-token", "--clean-partials"],
                            stderr=subprocess.PIPE, text=True)
    try:
        assert ch.try_lock() is not None
        assert recv.stderr is not None
        lines = [recv.stderr.readline() for _ in range(4)]
        text = "".join(lines)
        assert "removed partial a/b/.x.bin.zcopy-part (100.0 KiB)" in text
        assert "removed partial .y.bin.zcopy-part" in text
        assert "kept partial .held.bin.zcopy-part: a running session holds it" in text
        assert "--clean-partials: 2 partial files removed" in text
        assert "listening on 127.0.0.1:" in recv.stderr.readline()  # then it serves as usual
        assert not loose.exists() and not top.exists() and held.exists() and mine.exists()
    finally:
        ch.close()
        recv.kill()
        recv.wait()


def test_clean_partials_unit(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    a = tmp_path / "d" / partial_name(b"a").decode()
    a.write_bytes(b"a" * 8192)
    b = tmp_path / partial_name(b"b").decode()
    b.write_bytes(b"b")
    (tmp_path / "plain.txt").write_bytes(b"p")
    held = tmp_path / partial_name(b"held").decode()
    held.write_bytes(b"h")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    from zcopy import FileChannel

    ch = FileChannel(os.open(held, os.O_RDWR), own=True)
    try:
        assert ch.try_lock() is not None
        found, more = pt.find(root)
        assert not more and {f.path for f in found} == {b"d/.a.zcopy-part", b".b.zcopy-part", b".held.zcopy-part"}
        assert found[0].path == b"d/.a.zcopy-part"  # largest first
        _, more = pt.find(root, limit=1)
        assert more
        removed, busy = pt.clean(root)
        assert {f.path for f in removed} == {b"d/.a.zcopy-part", b".b.zcopy-part"}
        assert [f.path for f in busy] == [b".held.zcopy-part"]
        assert not a.exists() and not b.exists() and held.exists() and (tmp_path / "plain.txt").exists()
    finally:
        ch.close()
        os.close(root)


def test_a_session_that_ends_before_a_body_leaves_no_empty_partial(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = start_receiver(dst, plain=True)
    raw = RawSender(rx.address, ck.NONE)
    size = 1 << 20
    raw.send(raw.manifest((p.Entry(b"one.bin", False, size, 0o644, 0), p.Entry(b"two.bin", False, size, 0o644, 0))))
    raw.expect(p.PlanEnd)
    raw.send(p.FileStart(0, 0, size).encode() + os.urandom(4096))  # some of one.bin, nothing of two.bin
    raw.finish()
    assert rx.join().error is not None
    kept = partials(dst)
    assert [k.name for k in kept] == [partial_name(b"one.bin").decode()]  # 4096 bytes worth resuming
    assert kept[0].stat().st_size == 4096
    # A FILE frame and then the end: the partial made for it has nothing, and goes.
    rx = start_receiver(dst, plain=True)
    raw = RawSender(rx.address, ck.NONE)
    raw.send(raw.manifest((p.Entry(b"three.bin", False, size, 0o644, 0),)))
    raw.expect(p.PlanEnd)
    raw.send(p.FileStart(0, 0, size).encode())
    raw.finish()
    assert rx.join().error is not None
    assert [k.name for k in partials(dst)] == [partial_name(b"one.bin").decode()]
