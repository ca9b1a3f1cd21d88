"""A power loss loses what was never fsynced; a crash loses nothing.

A small writer service keeps files on its site's pool and acknowledges each write, some
fsynced, some not. The unsynced ones are written right before the fire (the kernel flushes
dirty pages by itself only after seconds), so that after `power-loss` they must be gone,
and after `crash` (the kernel and its page cache live on) they must all be there. The
inner tests run in the session test_disk_faults.py's run in (see writer_session.py), on
`writer@east`.
"""

from __future__ import annotations

import pytest
from writer_session import POWER_TESTS, assert_passed

pytestmark = pytest.mark.docker


def test_power_loss_loses_unsynced_writes_and_crash_keeps_them(
    writer_session: pytest.RunResult,
) -> None:
    result = writer_session
    assert_passed(result, POWER_TESTS)
    via = {
        m: line for line in result.outlines for m in ("power-loss", "crash") if f"VIA {m} " in line
    }
    assert "('storage', 'ext4-shutdown')" in via["power-loss"], via
    assert "('storage', 'fsfreeze')" in via["crash"], via  # crash freezes, as power-loss did
    out = result.stdout.str()
    assert "[power-loss]" in out and "[crash]" in out  # the fire table says which mode
