"""Device profiles (what a phone or an edge server computes like) and their emulation on this host.

Low layer: imports nothing from nodes, sweep or advise. `profile` is the data (docs/DEVICES.md), `emulation` the
calibration and stretching a node applies, `energy` the model-based energy of one inference.
"""

from splitbed.devices.errors import DeviceError, DeviceNotFoundError
from splitbed.devices.profile import HOST, DeviceProfile, builtin_names, builtin_profiles, load

DEFAULT_UE = "phone-midrange"
DEFAULT_EDGE = HOST

__all__ = ["DEFAULT_EDGE", "DEFAULT_UE", "HOST", "DeviceError", "DeviceNotFoundError", "DeviceProfile",
           "builtin_names", "builtin_profiles", "load"]
