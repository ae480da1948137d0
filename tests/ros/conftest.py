"""Fast DDS reads its XML profile once per process, when the first participant is created: give this test
process the shipped large-message profile before any rclpy context exists (node processes get it per call)."""

from __future__ import annotations

import os

from wsseg_export.node_replay import FASTDDS_PROFILE, fastdds_environment

for _name, _value in fastdds_environment(FASTDDS_PROFILE).items():  # its transports and history memory policy
    os.environ.setdefault(_name, _value)
