"""zcopy explain: move the user's file once to a socket, file or pipe and explain the route that did it.

Owns setting up the target (a discarding peer process, a temp file, a pipe), the one observed transfer, and the
explain document: route used, why, why not each other route, the copy model and the measured counters.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zcopy import FileChannel, SocketChannel, fastcopy, observe, routes
from zcopy.lab.peer import Peer
from zcopy.lab.tour import counters_of

TARGETS = ("socket", "file", "pipe")

# Byte count asked for when the file reports size 0 (procfs): far above any such file, below every offset limit.
UNSIZED_COUNT = 1 << 40


@contextlib.contextmanager
def _target(to: str, src: Path, dest_dir: Path | None) -> Iterator[tuple[Any, str, Peer | None]]:
    """(endpoint, description, peer) for the target kind; everything is removed afterwards."""
    if to == "socket":
        with Peer("sink") as peer:
            assert peer.address is not None
            sock = SocketChannel.open(peer.address)
            try:
                yield sock, f"TCP socket to a discarding receiver on {peer.address[0]}:{peer.address[1]}", peer
            finally:
                sock.close()
    elif to == "pipe":
        with Peer("drain") as peer:
            yield peer.stdin_fd(), "pipe to a discarding reader process", peer
    else:
        if dest_dir is not None:
            fd, name = tempfile.mkstemp(prefix=".zcopy-explain-", dir=dest_dir)
        else:
            try:  # next to the file: same filesystem, so copy_file_range may apply
                fd, name = tempfile.mkstemp(prefix=".zcopy-explain-", dir=src.parent)
            except OSError:  # read-only or pseudo filesystem (/proc): the system temp dir
                fd, name = tempfile.mkstemp(prefix=".zcopy-explain-")
        os.close(fd)
        try:
            with FileChannel.open(name, "w") as out:
                yield out, f"new file {name} (removed afterwards)", None
        finally:
            os.unlink(name)


def explain(path: Path, to: str, route: str | None = None, dest_dir: Path | None = None) -> dict[str, Any]:
    """Transfer the whole file once and return what happened and why (see render.render_explain)."""
    size = path.stat().st_size
    # procfs/sysfs files report size 0 but have data: ask for "everything" and let the transfer stop at EOF.
    count = size if size > 0 else UNSIZED_COUNT
    with FileChannel.open(path, "r") as ch, _target(to, path, dest_dir) as (target, what, peer):
        selection = None
        if to == "file" and route is None and path.is_file():
            # The same choice zcopy cp makes for a whole-file copy: direct for a large source not in the page
            # cache, else the table's order (copy_file_range first). Probed before the transfer touches the file.
            prefer, why = fastcopy.select(ch.fileno(), size, target.fileno())
            selection = {"preferred": prefer, "reason": why}
        with observe() as obs:
            if selection is not None:
                moved = routes.move(
                    ch.fileno(), target.fileno(), 0, count, prefer=selection["preferred"], reason=selection["reason"],
                    name=str(path), op="transfer_to",
                )
                n = moved.nbytes
            else:
                n = ch.transfer_to(0, count, target, route=route)
                last = ch.last_move
                assert last is not None  # transfer_to always sets it
                moved = last
        if peer is not None:
            if isinstance(target, SocketChannel):
                target.close()
            received = peer.finish()
            if received != n:
                raise RuntimeError(f"the receiver got {received} bytes, {n} were sent")
    src_kind, dst_kind = moved.src_kind, moved.dst_kind
    order = list(routes.table.order(src_kind, dst_kind))
    if selection is not None and selection["preferred"]:
        order = [selection["preferred"], *(r for r in order if r != selection["preferred"])]
    static = {r: routes.plan(src_kind, dst_kind, route=r)[0][1] for r in routes.ROUTES}
    model = routes.copy_model(moved.route, src_kind, dst_kind)
    return {
        "file": str(path), "size": size, "to": to, "target": what, "nbytes": n,
        "src_kind": src_kind, "dst_kind": dst_kind, "forced_route": route,
        "route": moved.route, "order": order, "skipped": [list(s) for s in moved.skipped],
        "static_reasons": static, "model": model.as_dict(), "counters": counters_of(obs),
        "selection": selection,
    }  # fmt: skip
