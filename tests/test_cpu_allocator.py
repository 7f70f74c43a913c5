"""common/__init__.py: TensorFlow keeps and reuses its CPU memory.

The default CPU allocator takes tensors above glibc's largest mmap threshold
(32 MiB; a batch of 16 super-resolution crops at 96 x 96 x 64 is 36 MiB)
straight from the system, and each one's pages are faulted in fresh and
zero-filled: that was 40% of the super-resolution default's time on 2 cores.
Counted here as minor page faults while the same 48 MiB tensors are made
again and again, in fresh processes (the allocator is chosen once, at
TensorFlow's first allocation).
"""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COUNT_FAULTS = """
import json, os, resource
import common
import tensorflow as tf

x = tf.random.normal([4096, 3072])  # 48 MiB
for _ in range(3):  # warm up: kernels, the pool's first chunks
    y = x * 2.0 + 1.0
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    y = x * 2.0 + 1.0
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"faults": after - before,
                  "setting": os.environ.get("TF_CPU_ALLOCATOR_USE_BFC")}))
"""


def page_faults(environment):
    env = {key: value for key, value in os.environ.items()
           if key != "TF_CPU_ALLOCATOR_USE_BFC"}
    env.update(environment, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", COUNT_FAULTS], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_common_makes_tensorflow_reuse_its_cpu_memory():
    pooled = page_faults({})
    assert pooled["setting"] == "true"
    # 20 tensors of 48 MiB (12,288 pages each) were made: fresh pages for
    # each would be about 245,000 faults.
    assert pooled["faults"] < 5000, pooled


def test_an_explicit_setting_wins_and_shows_the_cost_avoided():
    unpooled = page_faults({"TF_CPU_ALLOCATOR_USE_BFC": "false"})
    assert unpooled["setting"] == "false"
    assert unpooled["faults"] > 10 * 12288, unpooled
