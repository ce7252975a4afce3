"""Suite-wide settings.

Under CI (CI=true, as the CI runner sets) hypothesis draws from a fixed seed per test:
a submission is judged on the same examples every time, and a failure found while
developing (random seeds, the default elsewhere) is reproducible from its printed
example. Set HYPOTHESIS_PROFILE=dev to explore in CI too.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
settings.register_profile("dev")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
