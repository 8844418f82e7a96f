from .backbones import *  # noqa: F401,F403
from .connectors import *  # noqa: F401,F403
from .distillers import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .taps import *  # noqa: F401,F403
from .teachers import *  # noqa: F401,F403
