"""SIGKILL either side while a tree of many small files is in flight (batched bodies, batched publishing), then
`--resume`: no wrong file is ever visible under a final name, and the resumed tree is identical.

The seed is fixed and printed (ZCOPY_KILL_SEED replays or varies it); ZCOPY_KILL_POINTS sets how many points
(default 4, each two sessions). A point is an event, not a guessed time: "file j of the tree was just published"
(j drawn from the first 60 % of the tree), plus 0-5 ms; every fourth point instead kills during start-up. Points
alternate sender / receiver; receiver kills on the event always land mid-tree (a kill after the sender has
written its last byte may let the receiver finish: that point still checks what is visible).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from .conftest import ZCOPY, assert_same_tree, final_files_are_prefix_of_truth, partials, spawn_recv

SEED = int(os.environ.get("ZCOPY_KILL_SEED", "20261130"))
POINTS = int(os.environ.get("ZCOPY_KILL_POINTS", "4"))


def _tree(root: Path, rng: random.Random) -> Path:
    tree = root / "small"
    for d in range(30):
        (tree / f"d{d:02}").mkdir(parents=True)
    for i in range(3000):  # 3,000 files: two publish batches (of 2048)
        (tree / f"d{i % 30:02}" / f"f{i:04}").write_bytes(rng.randbytes(rng.randrange(0, 2048)))
    (tree / "d00" / "big.bin").write_bytes(rng.randbytes(2 << 20))  # one FILE-path body among them
    return tree


def _pair(tree: Path, dst: Path) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    recv, port = spawn_recv(dst, "--once")
    send = subprocess.Popen([*ZCOPY, "send", str(tree), f"127.0.0.1:{port}", "--resume"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return recv, send


def test_sigkill_during_small_file_batches_then_resume(tmp_path: Path) -> None:
    print(f"ZCOPY_KILL_SEED={SEED} ZCOPY_KILL_POINTS={POINTS}")
    rng = random.Random(SEED)
    tree = _tree(tmp_path / "src", rng)
    order = [Path(d) / f for d, dirs, files in os.walk(tree) for f in sorted(files)
             if not dirs.sort()]  # the sender's walk order, which is the publishing order
    killed = mid = 0
    for i in range(POINTS):
        dst = tmp_path / f"dst{i}"
        dst.mkdir()
        recv, send = _pair(tree, dst)
        if i % 4 == 2:
            time.sleep(rng.uniform(0, 0.3))  # start-up: before, while or just after connecting
        else:
            mark = dst / order[rng.randrange(int(len(order) * 0.6))].relative_to(tree.parent)
            end = time.monotonic() + 60
            while not mark.exists() and time.monotonic() < end and send.poll() is None:
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.005))
        victim, other = (send, recv) if i % 2 == 0 else (recv, send)
        if victim.poll() is None:
            victim.send_signal(signal.SIGKILL)
            killed += 1
        victim.wait(60)
        try:  # the survivor must notice at once (EOF/RST), not hang
            other.wait(5)
        except subprocess.TimeoutExpired:
            # Only a --once receiver whose sender died before connecting may still wait: then nothing happened.
            assert victim is send and list(dst.iterdir()) == [], "a survivor hung after its peer died"
            other.kill()
            other.wait()
        for proc in (recv, send):
            proc.communicate()
        present = final_files_are_prefix_of_truth(tree, dst / "small") if (dst / "small").exists() else []
        if 0 < len(present) < 3001 or partials(dst):
            mid += 1
        print(f"point {i}: killed the {'sender' if victim is send else 'receiver'} with {len(present)} files "
              f"published, {len(partials(dst))} partials kept")
        recv, send = _pair(tree, dst)
        _, err = send.communicate(timeout=60)
        assert send.returncode == 0, err
        assert recv.wait(60) == 0
        assert_same_tree(tree, dst / "small")
        assert not partials(dst)
    print(f"killed {killed} running processes, {mid} of {POINTS} points left a half-done tree")
    # The points must have hit running processes and half-done trees, or this test proves nothing.
    assert killed >= POINTS // 2 and mid >= 1
