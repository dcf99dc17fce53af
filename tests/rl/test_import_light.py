"""``import optrader`` (and ``optrader.rl``) stays light: no torch, no Stable-Baselines3."""

import subprocess
import sys


def test_import_optrader_does_not_import_torch_or_sb3():
    code = ("import sys, optrader, optrader.rl, optrader.envs.single; "
            "print(sorted(m for m in ('torch', 'stable_baselines3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"expected no torch/SB3 imported, got {out.stdout!r}"
