"""Trees of many small files: batched on the wire, published in batches with one syncfs each."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from zcopy.transfer import RemoteError, send
from zcopy.transfer import protocol as p
from zcopy.transfer import receiver as receiver_module
from zcopy.transfer.errors import E_NOSPACE

from .conftest import assert_same_tree, partials


def small_tree(root: Path, files: int, dirs: int, size: int) -> Path:
    tree = root / "many"
    for d in range(dirs):
        (tree / f"d{d:03}").mkdir(parents=True)
    (tree / "empty" / "deeper").mkdir(parents=True)
    for i in range(files):
        body = (i.to_bytes(4, "big") * (size // 4 + 1))[:size]
        f = tree / f"d{i % dirs:03}" / f"f{i:05}"
        f.write_bytes(body)
        os.utime(f, ns=(1_600_000_000_000_000_000 + i, 1_600_000_000_000_000_000 + i))
    os.chmod(tree / "d000" / "f00000", 0o640)
    os.utime(tree / "empty", ns=(1_500_000_000_000_000_000,) * 2)
    return tree


@pytest.mark.parametrize("plain,files", [(False, 20_000), (True, 2_000)])
def test_twenty_thousand_files_round_trip_in_batches(tmp_path: Path, start_receiver, plain: bool, files: int) -> None:  # type: ignore[no-untyped-def]
    # 20,000 files in the default (TLS) mode, as in the benchmark, but 64 bytes each so the suite stays fast
    # (bench/transfer.py sends 4 KiB files); plain mode takes the same batch path, so a tenth of it suffices.
    tree = small_tree(tmp_path / "src", files, 100, 64)
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = start_receiver(dst, plain=plain)
    res = send([tree], rx.address, plain=plain)
    rres = rx.join(timeout=120)
    assert res.ok and rres.ok, (res.failed[:3], rres.error)
    assert res.files == rres.files == rres.batched_files == files
    assert res.dirs == rres.dirs == 103
    # Batched durability: one sync per publish batch, not one per file.
    batch = rx.rx.publish_files
    assert batch == receiver_module.PUBLISH_FILES  # the descriptor limit was raised (or high enough) for it
    assert rres.syncs == files // batch + (files % batch > 0)
    assert_same_tree(tree, dst / "many")
    assert not partials(dst)


def test_disk_full_mid_batch_publishes_nothing_unverified(tmp_path: Path, start_receiver, tiny_fs: Path) -> None:  # type: ignore[no-untyped-def]
    # 400 × 4 KiB = 1.6 MiB into 1 MiB: the space runs out in the middle of the first publish batch.
    tree = small_tree(tmp_path / "src", 400, 4, 4096)
    rx = start_receiver(tiny_fs)
    assert rx.rx.publish_files > 400
    with pytest.raises(RemoteError, match="no space left") as info:
        send([tree], rx.address)
    assert info.value.code == E_NOSPACE
    assert rx.join().error_code == E_NOSPACE
    finals = [q for q in tiny_fs.rglob("*") if q.is_file() and not q.name.endswith(".zcopy-part")]
    assert finals == []  # the batch never reached its sync: nothing was published
    # Every partial kept holds exactly its source's bytes so far (a resume re-verifies them anyway).
    for part in partials(tiny_fs):
        name = part.name[1 : -len(".zcopy-part")]
        assert (tree / part.parent.name / name).read_bytes().startswith(part.read_bytes())


def test_small_file_size_boundary_takes_the_right_path(tmp_path: Path, start_receiver) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "src"
    src.mkdir()
    (src / "at").write_bytes(b"a" * p.SMALL_FILE_MAX)
    (src / "above").write_bytes(b"b" * (p.SMALL_FILE_MAX + 1))
    (src / "empty").write_bytes(b"")
    dst = tmp_path / "dst"
    dst.mkdir()
    rx = start_receiver(dst, plain=True)
    res = send([src / "at", src / "above", src / "empty"], rx.address, plain=True)
    rres = rx.join()
    assert res.ok and rres.ok
    assert res.batched_files == 2  # "at" and "empty"
    assert res.routes == {"readwrite": p.SMALL_FILE_MAX, "sendfile": p.SMALL_FILE_MAX + 1}
    for name in ("at", "above", "empty"):
        assert (dst / name).read_bytes() == (src / name).read_bytes()


def test_many_directories_under_a_low_descriptor_limit(tmp_path: Path) -> None:
    # 300 directories and 600 files against a receiver limited to 256 descriptors: directory fds and locked
    # partials together would exceed it, so the receiver publishes early and lets directory fds go.
    import resource

    from .conftest import ZCOPY

    tree = small_tree(tmp_path / "src", 600, 300, 100)
    dst = tmp_path / "dst"
    dst.mkdir()

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    recv = subprocess.Popen([*ZCOPY, "recv", str(dst), "--listen", "127.0.0.1:0", "--once", "--plain", "--no-token"],
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit)
    assert recv.stderr is not None
    line = recv.stderr.readline()
    port = int(line.split("127.0.0.1:")[1].split(",")[0])
    r = subprocess.run([*ZCOPY, "send", str(tree), f"127.0.0.1:{port}", "--plain"], capture_output=True, text=True,
                       timeout=60)
    _, err = recv.communicate(timeout=60)
    assert r.returncode == 0 and recv.returncode == 0, (r.stderr, err)
    assert_same_tree(tree, dst / "many")
