"""Before any training: is every backend asked for installed, and can wandb log without asking for a login?

wandb prompts for an API key when it has none, which in a batch job hangs
or fails hours in; this says what to set, in one line, before anything runs.
"""

from __future__ import annotations

import configparser
import importlib.util
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from utils.errors import UserError

# backend -> (module to import, what to install): the versions requirements.txt pins.
PACKAGES = {"wandb": ("wandb", "wandb==0.31.0"), "tensorboard": ("tensorboard", "tensorboard==2.21.0")}
# WANDB_MODE values under which wandb never contacts the server (dryrun is the old name of offline).
LOCAL_MODES = ("offline", "dryrun", "disabled")
DEFAULT_HOST = "https://api.wandb.ai"


class TrackingUnavailable(UserError):
    pass


def check_tracking(backends: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Raise :class:`TrackingUnavailable` (one line) when a backend cannot log from this process as set up."""
    env = os.environ if env is None else env
    for backend in backends:
        module, pin = PACKAGES[backend]
        if importlib.util.find_spec(module) is None:
            raise TrackingUnavailable(f"tracking: {backend} is not installed; install it with `pip install {pin}` "
                                      f"(or `pip install -r requirements.txt`), or remove {backend} from tracking")
    if "wandb" in backends and wandb_mode(env) not in LOCAL_MODES and not has_wandb_credentials(env):
        raise TrackingUnavailable(
            "tracking: wandb has no credentials and would ask for a login; set WANDB_API_KEY (or run `wandb login` "
            "once), or set WANDB_MODE=offline to log locally and upload later with `wandb sync`")


def _settings(env: Mapping[str, str]) -> configparser.SectionProxy | None:
    """wandb's global settings file (``wandb login``/``wandb offline`` write it), section ``default``."""
    folder = env.get("WANDB_CONFIG_DIR") or str(Path(env.get("HOME", "~")).expanduser() / ".config" / "wandb")
    parser = configparser.ConfigParser()
    try:
        parser.read(Path(folder) / "settings")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return None
    return parser["default"] if parser.has_section("default") else None


def wandb_mode(env: Mapping[str, str]) -> str:
    """online, offline, dryrun or disabled: from WANDB_MODE, WANDB_DISABLED, else the settings file."""
    mode = env.get("WANDB_MODE", "").strip().lower()
    if mode:
        return mode
    if env.get("WANDB_DISABLED", "").strip().lower() in ("true", "1", "yes"):
        return "disabled"
    settings = _settings(env)
    return (settings.get("mode") if settings is not None else None) or "online"


def has_wandb_credentials(env: Mapping[str, str]) -> bool:
    """An API key in the environment, in ``.netrc`` for the wandb host, or in wandb's settings file."""
    if env.get("WANDB_API_KEY") or env.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or DEFAULT_HOST).hostname or ""
    home = Path(env.get("HOME", "~")).expanduser()
    for path in ([env["NETRC"]] if env.get("NETRC") else [home / ".netrc", home / "_netrc"]):
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except (OSError, netrc.NetrcParseError):
            continue
        if entry and entry[2]:
            return True
    settings = _settings(env)
    return bool(settings is not None and settings.get("api_key"))
