from __future__ import annotations

from zcopy.lab import flows
from zcopy.routes import copy_model


def test_traditional_edit_has_two_cpu_copies_through_a_user_buffer() -> None:
    line, cpu, dma = flows.edit_flow("readwrite")
    assert (cpu, dma) == (2, 2)
    assert line.startswith("disk ─DMA→ page cache") and "user buffer" in line and line.endswith("disk")


def test_mmap_edit_copies_nothing_on_the_cpu() -> None:
    line, cpu, dma = flows.edit_flow("mmap-edit")
    assert cpu == 0 and dma == 2
    assert "user mapping" in line and "user buffer" not in line


def test_route_flow_is_the_core_copy_model() -> None:
    for route, src, dst in [("sendfile", "file", "socket"), ("readwrite", "file", "socket"),
                            ("splice", "socket", "file"), ("copy_file_range", "file", "file")]:  # fmt: skip
        m = copy_model(route, src, dst)
        assert flows.route_flow(route, src, dst) == (m.render(), m.cpu_copies, m.dma_copies)
    assert flows.route_flow("sendfile", "file", "socket")[1] == 0
    assert flows.route_flow("readwrite", "file", "socket")[1] == 2
