"""send() and Receiver over real sockets on 127.0.0.1 with real files (receiver in a thread)."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from zcopy import _sys
from zcopy.transfer import AuthError, ProtocolError, RemoteError, TransferError, VersionError, send
from zcopy.transfer import checksum as ck
from zcopy.transfer import protocol as p
from zcopy.transfer.errors import E_AUTH, E_CHECKSUM, E_EXISTS, E_NAME, E_NOSPACE, E_PROTOCOL, E_VERSION
from zcopy.transfer.names import partial_name

from .conftest import RawSender, assert_same_tree, direct_here, make_tree, partials, snapshot


@pytest.mark.parametrize("algo", ["xxh3", "sha256", "none"])
def test_plain_tree_and_file_arrive_identical_by_zero_copy_routes(tmp_path: Path, start_receiver, algo) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    tree = make_tree(src)
    (tree / "link").symlink_to("big.bin")
    lone = src / "lone.txt"
    lone.write_bytes(b"single file\n")
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = start_receiver(dst, plain=True, cache=True)  # --cache: splice into the page cache, not O_DIRECT
    res = send([tree, lone], rx.address, checksum_name=algo, plain=True)
    rres = rx.join()
    assert res.ok and rres.ok, (res, rres)
    before = tree.stat()
    os.unlink(tree / "link")  # symlinks are skipped (without --links), with a warning
    os.utime(tree, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert any("symlink" in w and "--links" in w for w in res.warnings)
    assert_same_tree(tree, dst / "tree")
    assert (dst / "lone.txt").read_bytes() == b"single file\n"
    sizes = [len(v[3]) for v in snapshot(tree).values() if v[0] == "file"] + [len(b"single file\n")]
    total = sum(sizes)
    big = sum(n for n in sizes if n > p.SMALL_FILE_MAX)
    assert res.bytes_sent == res.bytes_total == rres.bytes == total
    assert res.files == rres.files == 16
    assert res.batched_files == rres.batched_files == sum(n <= p.SMALL_FILE_MAX for n in sizes)
    # Routes are what the channels reported: large files by sendfile out and splice in (no user-space byte);
    # small ones batched, copied through user space, and counted so.
    assert res.routes == {"sendfile": big, "readwrite": total - big}
    assert rres.routes == ({"splice": big, "readwrite": total - big} if _sys.HAS_SPLICE else {"readwrite": total})
    assert rres.user_bytes == 2 * (total - big)  # received into a buffer and written from it
    assert res.receiver["routes"] == rres.routes
    assert res.checksum == rres.checksum == algo
    assert res.encryption == rres.encryption == "none"
    assert not partials(dst)


@pytest.mark.parametrize("plain", [False, True])
def test_default_lands_large_files_by_o_direct_and_tls_says_it_copies(tmp_path: Path, start_receiver,  # type: ignore[no-untyped-def]
                                                                      plain: bool) -> None:
    tree = make_tree(tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    if not direct_here(dst):
        pytest.skip("no O_DIRECT on this file system (the receiver uses the page cache here, and says so)")
    rx = start_receiver(dst, plain=plain)
    res = send([tree], rx.address, plain=plain)
    rres = rx.join()
    assert res.ok and rres.ok, (res, rres)
    assert_same_tree(tree, dst / "tree")
    assert res.encryption == rres.encryption == res.receiver["encryption"] == ("none" if plain else "tls1.3")
    sizes = [len(v[3]) for v in snapshot(tree).values() if v[0] == "file"]
    big = sum(n for n in sizes if n > p.SMALL_FILE_MAX)
    # Large files by O_DIRECT from the buffer they arrived (or were decrypted) in, hashed there: one CPU copy,
    # and, like every route through a user buffer, two crossings of its boundary (in, and out by DMA).
    assert rres.routes == {"direct": big, "readwrite": res.bytes_sent - big}
    assert rres.user_bytes == 2 * res.bytes_sent
    if not plain:  # encrypted bytes pass through user space on the sender too: never reported as sendfile
        assert set(res.routes) == {"readwrite"}
    if not plain:
        assert res.certificate.startswith("SHA256:") and res.certificate == rx.rx.fingerprint
    assert not partials(dst)


def test_links_only_with_links_on_both_sides(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    tree = tmp_path / "src" / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_text("x")
    (tree / "rel").symlink_to("d/f")
    (tree / "dangling").symlink_to("/nonexistent/elsewhere")
    os.utime(tree / "rel", ns=(1_600_000_000_000_000_000,) * 2, follow_symlinks=False)
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = start_receiver(dst)  # no --links on the receiver: refused before anything is written
    with pytest.raises(RemoteError, match="--links") as info:
        send([tree], rx.address, links=True)
    assert info.value.code == E_NAME
    rx.join()
    assert list(dst.iterdir()) == []
    rx = start_receiver(dst, links=True)
    res = send([tree], rx.address, links=True)
    rres = rx.join()
    assert res.ok and rres.ok and rres.links == res.links == 2
    assert os.readlink(dst / "t" / "rel") == "d/f"
    assert os.readlink(dst / "t" / "dangling") == "/nonexistent/elsewhere"
    assert os.lstat(dst / "t" / "rel").st_mtime_ns == 1_600_000_000_000_000_000
    assert (dst / "t" / "d" / "f").read_text() == "x"
    assert not partials(dst)
    # Resent with --resume: the identical links are skipped, not refused.
    rx = start_receiver(dst, links=True)
    assert send([tree], rx.address, links=True, resume=True).ok
    assert rx.join().ok


def test_wrong_or_missing_token_refused_before_anything_is_written(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree(tmp_path / "src", big=10_000)
    dst = tmp_path / "dst"
    dst.mkdir()
    for token in ("wrong", None):
        rx = start_receiver(dst, token="right")
        with pytest.raises((RemoteError, AuthError)) as info:
            send([tree], rx.address, token=token)
        assert info.value.code == E_AUTH
        rres = rx.join()
        assert rres.error_code == E_AUTH
        assert list(dst.iterdir()) == []
    # A sender holding a token refuses a receiver that cannot prove it knows it.
    rx = start_receiver(dst)
    with pytest.raises(AuthError):
        send([tree], rx.address, token="right")
    rx.join()
    assert list(dst.iterdir()) == []
    rx = start_receiver(dst, token="right")
    assert send([tree], rx.address, token="right").ok
    assert rx.join().ok
    assert_same_tree(tree, dst / "tree")


def test_existing_files_are_not_overwritten_without_overwrite(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree(tmp_path / "src", big=10_000)
    dst = tmp_path / "dst"
    (dst / "tree" / "sub").mkdir(parents=True)
    (dst / "tree" / "sub" / "f03.dat").write_bytes(b"mine")
    rx = start_receiver(dst)
    with pytest.raises(RemoteError, match=r"tree/sub/f03\.dat already exists \(") as info:
        send([tree], rx.address)
    assert info.value.code == E_EXISTS
    rx.join()
    # Nothing at all was written: not the other files, not even the empty directory.
    assert sorted(str(q.relative_to(dst)) for q in dst.rglob("*")) == ["tree", "tree/sub", "tree/sub/f03.dat"]
    assert (dst / "tree" / "sub" / "f03.dat").read_bytes() == b"mine"
    # --resume on its own does not overwrite a different file either.
    rx = start_receiver(dst)
    with pytest.raises(TransferError, match="differs"):
        send([tree], rx.address, resume=True)
    rx.join()
    assert (dst / "tree" / "sub" / "f03.dat").read_bytes() == b"mine"
    rx = start_receiver(dst, overwrite=True)
    assert send([tree], rx.address).ok
    rx.join()
    assert_same_tree(tree, dst / "tree")


def test_resume_skips_identical_files_and_continues_verified_partials(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree(tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = start_receiver(dst)
    assert send([tree / "sub"], rx.address).ok
    rx.join()
    # A good partial of big.bin (its first 1 MiB + 5 bytes) and a bad one of a small file.
    big = (tree / "big.bin").read_bytes()
    (dst / "tree").mkdir()
    (dst / "tree" / partial_name(b"big.bin").decode()).write_bytes(big[: (1 << 20) + 5])
    (dst / "tree" / "sub").mkdir()
    bad = (tree / "sub" / "f04.dat").read_bytes()
    (dst / "tree" / "sub" / partial_name(b"f04.dat").decode()).write_bytes(b"X" + bad[1:100])
    os.rename(dst / "sub", dst / "oldsub")
    rx = start_receiver(dst)
    res = send([tree], rx.address, resume=True)
    rx.join()
    assert res.ok
    assert res.bytes_resumed == (1 << 20) + 5  # the bad prefix was resent from 0
    assert_same_tree(tree, dst / "tree")
    assert not partials(dst)
    # Again with everything in place: every file is skipped, no body byte moves. A partial left next to a
    # published file (killed between link and unlink) is cleaned up.
    (dst / "tree" / partial_name(b"big.bin").decode()).write_bytes(big)
    (dst / "tree" / "sub" / partial_name(b"f05.dat").decode()).write_bytes((tree / "sub" / "f05.dat").read_bytes())
    rx = start_receiver(dst)
    res = send([tree], rx.address, resume=True)
    rx.join()
    assert res.ok and res.bytes_sent == 0 and res.skipped == 15 and res.files == 0
    assert_same_tree(tree, dst / "tree")
    assert not partials(dst)


@pytest.mark.parametrize("change", ["truncate", "grow", "rewrite"])
def test_source_changing_while_sent_is_reported_and_not_published(tmp_path: Path, start_receiver, change) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    victim = src / "victim.bin"
    victim.write_bytes(os.urandom(40 << 20))
    other = src / "other.txt"
    other.write_bytes(b"fine\n")
    dst = tmp_path / "dst"
    dst.mkdir()
    fired = []

    def progress(done: int, total: int) -> None:
        # Called after each 16 MiB chunk of victim.bin: change the file under the sender, once.
        if fired or done >= total:
            return
        fired.append(done)
        if change == "truncate":
            os.truncate(victim, 20 << 20)
        elif change == "grow":
            with open(victim, "ab") as f:
                f.write(b"more")
        else:
            with open(victim, "r+b") as f:
                f.write(b"Z" * 10)

    rx = start_receiver(dst)
    res = send([victim, other], rx.address, progress=progress)
    rres = rx.join()
    assert fired
    assert [f["path"] for f in res.failed] == [str(victim)]
    assert any("changed while being sent" in w for w in res.warnings)
    assert not (dst / "victim.bin").exists()
    assert not partials(dst)
    assert (dst / "other.txt").read_bytes() == b"fine\n"
    assert rres.files == 1 and len(rres.failed) == 1


@pytest.mark.parametrize("bad", [b"../escape", b"/abs/path", b"a/../../escape", b"..\\..\\escape", b"a\x00b"])
def test_names_that_could_escape_are_refused(tmp_path: Path, start_receiver, bad: bytes) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "in" / "dst"
    dst.mkdir(parents=True)
    raw = RawSender(start_receiver(dst, plain=True).address, ck.NONE)
    raw.send(raw.manifest((p.Entry(b"ok", False, 1, 0o644, 0), p.Entry(bad, False, 1, 0o644, 0))))
    errors = [e for e in raw.finish() if isinstance(e, p.Error)]
    assert errors and errors[0].code == E_NAME
    assert list(dst.iterdir()) == [] and sorted(os.listdir(tmp_path / "in")) == ["dst"]


def test_symlink_inside_target_dir_is_refused(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    tree = make_tree(tmp_path / "src", big=1000)
    outside = tmp_path / "outside"
    outside.mkdir()
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "tree").symlink_to(outside)
    rx = start_receiver(dst)
    with pytest.raises(RemoteError, match="symlink") as info:
        send([tree], rx.address)
    assert info.value.code == E_NAME
    rx.join()
    assert list(outside.iterdir()) == []


def test_not_a_zcopy_peer_and_unknown_version(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = start_receiver(dst)
    with socket.create_connection(rx.address, timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        wire = b""
        while chunk := s.recv(65536):
            wire += chunk
    res = rx.join()
    assert "not speaking the zcopy protocol" in (res.error or "")
    assert res.error_code == E_PROTOCOL
    assert wire.endswith(p.Error(E_PROTOCOL, res.error or "").encode())
    # A receiver of another version: the sender names the mismatch, and so does the receiver.
    rx = start_receiver(dst)
    with socket.create_connection(rx.address, timeout=10) as s:
        s.sendall(p.encode_preamble(1) + struct.pack(">BI", 1, 36) + bytes(36))  # a version-1 HELLO
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    res = rx.join()
    assert res.error_code == E_VERSION and "version 1" in (res.error or "")
    with socket.create_server(("127.0.0.1", 0)) as fake:
        import threading

        def serve() -> None:
            conn, _ = fake.accept()
            with conn:
                conn.sendall(p.encode_preamble(9) + p.Error(E_VERSION, "I speak 9").encode())
                conn.recv(1000)

        t = threading.Thread(target=serve)
        t.start()
        with pytest.raises(VersionError, match="version 9"):
            send([dst], fake.getsockname())
        t.join()
    assert list(dst.iterdir()) == []


def test_checksum_mismatch_is_not_published(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "dst"
    dst.mkdir()
    body = b"payload" * 100_000  # large: FILE + spliced body + TRAILER
    small = b"tiny"  # small: a BATCH item
    rx = start_receiver(dst, plain=True)
    raw = RawSender(rx.address)
    raw.send(raw.manifest((p.Entry(b"f", False, len(body), 0o644, 0), p.Entry(b"g", False, 4, 0o644, 0))))
    raw.send(p.FileStart(0, 0, len(body)).encode() + body + p.Trailer(0, p.S_OK, b"\x00" * 16).sealed(raw.key).encode()
             + p.Batch.build(raw.key, [p.BatchItem(1, p.S_OK, b"\x01" * 16, small)])
             + p.Done(2).sealed(raw.key).encode())
    events = raw.finish()
    assert rx.join().error is None
    items = [it for e in events if isinstance(e, p.Ack) for it in e.items]
    assert items == [p.AckItem(0, p.S_FAILED, E_CHECKSUM, "f: checksum mismatch, not published"),
                     p.AckItem(1, p.S_FAILED, E_CHECKSUM, "g: checksum mismatch, not published")]
    assert list(dst.iterdir()) == []


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_dropped_connection_keeps_partial_then_resume_completes(tmp_path: Path, start_receiver, how) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(3 << 20)
    (src / "f.bin").write_bytes(data)
    dst = tmp_path / "dst"
    dst.mkdir()
    st = os.stat(src / "f.bin")
    half = len(data) // 2
    rx = start_receiver(dst, plain=True)
    raw = RawSender(rx.address)
    raw.send(raw.manifest((p.Entry(b"f.bin", False, len(data), 0o644, st.st_mtime_ns),))
             + p.FileStart(0, 0, len(data)).encode() + data[:half])
    with raw.sock as s:
        if how == "fin":  # a clean close after reading what the receiver said: EOF mid-body
            raw.expect(p.PlanEnd)
            s.shutdown(socket.SHUT_WR)
        else:  # an abortive close, as when a process dies with unread data: RST
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    res = rx.join()
    assert ("went away" if how == "fin" else "connection") in (res.error or "")
    assert not (dst / "f.bin").exists()
    part = dst / partial_name(b"f.bin").decode()
    # After an RST the kernel may drop what was still queued, even before the FILE frame was read.
    kept = part.read_bytes() if how == "fin" or part.exists() else b""
    assert len(kept) <= half and kept == data[: len(kept)]
    if how == "fin":
        assert len(kept) == half
    rx = start_receiver(dst, plain=True)
    out = send([src / "f.bin"], rx.address, resume=True, plain=True)
    rx.join()
    assert out.ok and out.bytes_resumed == len(kept) and out.bytes_sent == len(data) - len(kept)
    assert (dst / "f.bin").read_bytes() == data
    assert not part.exists()


def test_disk_full_is_a_clear_error_and_keeps_the_partial(tmp_path: Path, start_receiver, tiny_fs: Path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 << 20))
    rx = start_receiver(tiny_fs)
    with pytest.raises(RemoteError, match="no space left") as info:
        send([src], rx.address)
    assert info.value.code == E_NOSPACE
    res = rx.join()
    assert res.error_code == E_NOSPACE
    assert not (tiny_fs / "big.bin").exists()
    kept = partials(tiny_fs)
    assert len(kept) == 1 and 0 < kept[0].stat().st_size < (3 << 20)
    assert kept[0].read_bytes() == src.read_bytes()[: kept[0].stat().st_size]


def test_a_partial_locked_by_another_session_is_left_alone(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    from zcopy import FileChannel

    src = tmp_path / "f.bin"
    src.write_bytes(b"new bytes" * 1000)
    dst = tmp_path / "dst"
    dst.mkdir()
    part = dst / partial_name(b"f.bin").decode()
    part.write_bytes(b"another session's bytes")
    with FileChannel.open(part, "r+") as other, other.lock():
        rx = start_receiver(dst)
        with pytest.raises(RemoteError, match="being received by another session"):
            send([src], rx.address)
        rx.join()
        assert part.read_bytes() == b"another session's bytes"
        assert not (dst / "f.bin").exists()


def test_malformed_frame_mid_session_is_refused_both_ways(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = start_receiver(dst, plain=True)
    raw = RawSender(rx.address)
    raw.send(raw.manifest((p.Entry(b"f", False, 5, 0o644, 0),)) + struct.pack(">BI", p.T_TRAILER, 3) + b"bad")
    events = raw.finish()
    res = rx.join()
    assert res.error_code == E_PROTOCOL and "out of order" in (res.error or "")
    errors = [e for e in events if isinstance(e, p.Error)]
    assert errors and errors[0].code == E_PROTOCOL
    assert list(dst.iterdir()) == []
    # And a receiver that answers the manifest with a broken PLAN: the sender says so, to us and to it.
    import threading

    src = tmp_path / "f.txt"
    src.write_text("x")
    heard: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as fake:

        def serve() -> None:
            conn, _ = fake.accept()
            with conn:
                conn.sendall(p.encode_preamble() + p.Open(p.M_PLAIN).encode()
                             + p.Welcome(p.FEATURES, False, b"r" * 32).encode()
                             + struct.pack(">BI", p.T_PLAN, 2) + b"\x05\x00")
                conn.settimeout(10)
                while chunk := conn.recv(65536):
                    heard.append(chunk)

        t = threading.Thread(target=serve)
        t.start()
        with pytest.raises(ProtocolError, match="malformed PLAN"):
            send([src], fake.getsockname(), plain=True)
        t.join()
    dec = p.Decoder("sender")
    dec.feed(b"".join(heard))
    events = []
    while (ev := dec.next_event()) is not p.NEED_DATA:
        events.append(ev)
    assert isinstance(events[-1], p.Error) and events[-1].code == E_PROTOCOL


def test_ipv6_loopback(tmp_path: Path) -> None:
    from zcopy.transfer import Receiver

    try:
        rx = Receiver(tmp_path, ("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    src = tmp_path / "src.txt"
    src.write_text("over v6\n")
    dst = tmp_path / "in"
    dst.mkdir()
    rx.close()
    import threading

    with Receiver(dst, ("::1", 0)) as rx:
        t = threading.Thread(target=rx.serve_once)
        t.start()
        assert send([src], rx.address).ok
        t.join()
    assert (dst / "src.txt").read_text() == "over v6\n"


def test_resume_with_a_partial_larger_than_the_source(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    # The source shrank since the partial was written (or the partial is someone else's): nothing of it can be
    # trusted, not even a matching prefix. The whole file is resent and the result has the source's size.
    src = tmp_path / "f.bin"
    data = os.urandom(100_000)
    src.write_bytes(data)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / partial_name(b"f.bin").decode()).write_bytes(data + os.urandom(50_000))  # right prefix, too long
    rx = start_receiver(dst)
    res = send([src], rx.address, resume=True)
    rx.join()
    assert res.ok and res.files == 1 and res.bytes_resumed == 0 and res.bytes_sent == len(data)
    assert (dst / "f.bin").read_bytes() == data and not partials(dst)


def test_resume_of_a_complete_partial_sends_no_body(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    # Killed after the last body byte but before publishing: the resume only verifies and publishes.
    src = tmp_path / "f.bin"
    data = os.urandom(1 << 20)
    src.write_bytes(data)
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / partial_name(b"f.bin").decode()).write_bytes(data)
    rx = start_receiver(dst)
    res = send([src], rx.address, resume=True, checksum_name="sha256")
    rres = rx.join()
    assert res.ok and res.files == 1 and res.bytes_sent == 0 and res.bytes_resumed == len(data)
    assert rres.routes == {}  # nothing moved, so no route is claimed
    assert (dst / "f.bin").read_bytes() == data and not partials(dst)


@pytest.mark.parametrize("plain", [False, True])
def test_disk_full_during_a_direct_receive(tmp_path: Path, start_receiver, plain: bool) -> None:  # type: ignore[no-untyped-def]
    """ENOSPC from the overlapped O_DIRECT writer (a loop ext4: tmpfs has no direct I/O): a clear error naming the
    bytes kept, the partial holds exactly them, and the writer's helper thread is gone."""
    import threading

    from direct_fs import small_ext4

    from zcopy.routes.direct_writer import THREAD_NAME

    src = tmp_path / "big.bin"
    src.write_bytes(data := os.urandom(24 << 20))
    with small_ext4(16) as fs:
        rx = start_receiver(fs, plain=plain)
        with pytest.raises(RemoteError, match="no space left") as info:
            send([src], rx.address, plain=plain)
        assert info.value.code == E_NOSPACE
        res = rx.join()
        assert res.error_code == E_NOSPACE
        kept = partials(fs)
        assert len(kept) == 1
        size = kept[0].stat().st_size
        assert 0 < size < (16 << 20) and kept[0].read_bytes() == data[:size]
        assert f"{size} of {24 << 20} bytes kept" in (res.error or "")
        assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]
