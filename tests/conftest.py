import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent / "models"))
settings.register_profile(
    "posevlm", max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "40")), deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("posevlm")
