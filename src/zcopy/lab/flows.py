"""The data-flow line of each tour path, built from the core's copy models (zcopy.routes) as data. Pure.

Transfers use the model of the route that really ran; the two edit paths (read-modify-write and mmap-in-place)
are not transfers between two fds, so their models are composed here from the same Hop/CopyModel pieces.
"""

from __future__ import annotations

from zcopy.routes import CPU, DMA, REF, CopyModel, Hop, copy_model

EDIT_MODELS: dict[str, CopyModel] = {
    # The article's figure 1-1: read() copies page cache → user buffer, write() copies it back.
    "readwrite": CopyModel("readwrite", (
        Hop("disk", "page cache", DMA),
        Hop("page cache", "user buffer (modify old↔new)", CPU, "read()"),
        Hop("user buffer (modify old↔new)", "page cache", CPU, "write()"),
        Hop("page cache", "disk", DMA, "force()"),
    ), user_space=True),
    # The article's figure 2-1: the page cache pages are the user's memory; a store dirties them in place.
    "mmap-edit": CopyModel("mmap-edit", (
        Hop("disk", "page cache", DMA, "on page fault"),
        Hop("page cache", "user mapping (modify in place)", REF, "same pages, mapped"),
        Hop("user mapping (modify in place)", "disk", DMA, "force() writes dirty pages"),
    ), user_space=False),
}  # fmt: skip


def edit_flow(model: str) -> tuple[str, int, int]:
    """(line, CPU copies, DMA copies) of an edit path."""
    m = EDIT_MODELS[model]
    return m.render(), m.cpu_copies, m.dma_copies


def route_flow(route: str, src_kind: str, dst_kind: str) -> tuple[str, int, int]:
    """(line, CPU copies, DMA copies) of the route that ran between these endpoint kinds."""
    m = copy_model(route, src_kind, dst_kind)
    return m.render(), m.cpu_copies, m.dma_copies


def model_of(route: str, job: str) -> CopyModel | None:
    """The copy model a tour step's run used, from its route and job ("file edit", "file→socket", ...): how a
    report redraws a saved tour JSON written before runs carried their model. None when neither knows it."""
    if job == "file edit":
        return EDIT_MODELS.get(route)
    src, sep, dst = job.partition("→")
    if not sep:
        return None
    try:
        return copy_model(route, src.strip(), dst.strip())
    except KeyError:
        return None
