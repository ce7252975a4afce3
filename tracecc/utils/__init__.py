"""tracecc.utils: `tracecc.utils.data` is tracecc.data, so code written against
torch.utils.data runs after `import tracecc as torch`."""

import sys

from .. import data  # noqa: F401

# make `import tracecc.utils.data` (and `from tracecc.utils.data import X`) find it too
sys.modules[__name__ + ".data"] = data
