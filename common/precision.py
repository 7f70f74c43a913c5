"""Which Keras precision policy a run trains under, and why.

`run.mixed_precision` is tri-state: True (`--mixed-precision`) and False
(`--no-mixed-precision`) are the user's word; None ("auto", the default)
trains in bfloat16 only where that was measured to pay and to keep quality:

- the preset opts in (`run.bfloat16_on_cpu`, set by the presets whose
  default run was measured with bfloat16: same metric, faster);
- there is no GPU (a GPU run stays float32 unless asked: float16 needs its
  own measurement);
- the CPU multiplies bfloat16 natively (AVX512_BF16 or AMX_BF16). Without
  them oneDNN emulates bfloat16 with float32 arithmetic plus conversions,
  which is slower than float32.

`decide` is a pure function of the config, the CPU flags and GPU presence,
so tests can pass fake flags; `training.configure` calls it with the real
ones. Mixed precision keeps the variables in float32, and every export goes
through `export.as_float32`, so the files a run writes are float32 / int8
whatever the policy.
"""

import dataclasses

# /proc/cpuinfo flags of CPUs with bfloat16 multiply instructions.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


@dataclasses.dataclass(frozen=True)
class Decision:
    policy: str  # a Keras policy name: float32, mixed_bfloat16, mixed_float16
    reason: str  # one sentence for the run's log and report

    def as_dict(self):
        return {"policy": self.policy, "reason": self.reason}


def cpu_flags(path=CPUINFO):
    """The CPU feature flags Linux lists (empty where it lists none)."""
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def decide(run_config, flags, gpu):
    """The policy for `run_config` on a machine with these CPU `flags` and
    (`gpu`) a GPU or not."""
    requested = run_config.mixed_precision
    if requested is True:
        # float16 needs loss scaling and only pays on GPUs; bfloat16 elsewhere.
        if gpu:
            return Decision("mixed_float16", "--mixed-precision on a GPU")
        return Decision("mixed_bfloat16", "--mixed-precision on a CPU")
    if requested is False:
        return Decision("float32", "--no-mixed-precision")
    if not run_config.bfloat16_on_cpu:
        return Decision("float32", "the preset does not opt in to bfloat16 "
                        "(run.bfloat16_on_cpu is false)")
    if gpu:
        return Decision("float32", "a GPU is present and the preset's bfloat16 opt-in "
                        "is for CPUs (--mixed-precision trains in float16 there)")
    native = sorted(set(flags) & set(NATIVE_BF16_FLAGS))
    if not native:
        return Decision("float32", "the preset opts in to bfloat16, but this CPU has no "
                        f"{' / '.join(NATIVE_BF16_FLAGS)} (bfloat16 would be emulated, slower)")
    return Decision("mixed_bfloat16", "the preset opts in to bfloat16 and this CPU "
                    f"multiplies it natively ({', '.join(native)})")


def describe(decision):
    """The line a run prints."""
    return f"[run] precision {decision.policy}: {decision.reason}"
