"""Running agentseat as a service of the machine: a systemd user unit for the headless bot."""

from __future__ import annotations

from .install import BotCommandLine, install, interactive_prompt, print_unit, service_spec, warn_left_out
from .systemd import ServiceSpec, credential_path, render_unit, unit_path

__all__ = ["BotCommandLine", "ServiceSpec", "credential_path", "install", "interactive_prompt", "print_unit",
           "render_unit", "service_spec", "unit_path", "warn_left_out"]
