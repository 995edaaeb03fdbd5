"""clearcut.memory: freed buffers stay in the heap, so the next image's arrays do not fault in fresh pages."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clearcut import config

PROBE = r"""
import json, resource, sys
import numpy as np
from clearcut.memory import retain_freed_memory
applied = retain_freed_memory(int(sys.argv[1]))
def churn():
    for _ in range(4):   # four images' worth of temporaries (a 4 MP RGB float plane, 0.5 MP gathers)
        arrays = [np.ones((4_000_000, 3), np.float32), *(np.ones((500_000, 3), np.float32) for _ in range(3))]
        del arrays
churn()                  # the first image may grow the heap
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn()
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def probe(megabytes: int) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, str(megabytes)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_retained_memory_is_reused_without_page_faults():
    default, retained = probe(0), probe(512)
    assert default["applied"] is False and retained["applied"] is True
    if default["faults"] < 500:
        pytest.skip(f"glibc's defaults already reuse these buffers here ({default['faults']} faults)")
    # With the defaults the arrays are fresh mappings each time (seen here: 1,900-4,000 faults for
    # 4 x 66 MB); reused heap pages need next to none.
    assert retained["faults"] * 10 < default["faults"]


THREADS = r"""
import json, resource, sys, threading
import numpy as np
from clearcut.memory import retain_freed_memory
applied = retain_freed_memory(int(sys.argv[1]))
def image():
    arrays = [np.ones((2_000_000, 3), np.float32) for _ in range(4)]  # four 24 MB temporaries
    del arrays
for _ in range(2):
    helper = threading.Thread(target=image)  # a helper thread's temporaries (grid, PNG segments, ...)
    helper.start()
    helper.join()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
image()  # the next image's, on the main thread
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_memory_a_helper_thread_freed_is_reused_by_the_main_thread():
    def run(megabytes):
        out = subprocess.run([sys.executable, "-c", THREADS, str(megabytes)], capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout)

    default, retained = run(0), run(512)
    assert retained["applied"] is True
    if default["faults"] < 500:
        pytest.skip(f"glibc's defaults already share these buffers here ({default['faults']} faults)")
    assert retained["faults"] * 10 < default["faults"]  # one shared heap: no fresh pages for the same sizes


def test_setting_is_validated(monkeypatch):
    monkeypatch.setenv("CLEARCUT_MALLOC_RETAIN_MB", "-1")
    with pytest.raises(Exception, match="CLEARCUT_MALLOC_RETAIN_MB"):
        config.get("CLEARCUT_MALLOC_RETAIN_MB")
    monkeypatch.setenv("CLEARCUT_MALLOC_RETAIN_MB", "0")
    assert config.get("CLEARCUT_MALLOC_RETAIN_MB") == 0
