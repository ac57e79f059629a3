"""ChatSettings is the one source of the chat defaults: the CLI options are built from it."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from m2ugen.commands.common import add_sampling_options, settings
from m2ugen.errors import ConfigError
from m2ugen.settings import DEFAULTS, ChatSettings


def test_cli_defaults_are_the_chat_settings_defaults():
    parser = argparse.ArgumentParser()
    add_sampling_options(parser, music=True)
    args = parser.parse_args([])
    assert ChatSettings(**settings(args)) == DEFAULTS
    assert dataclasses.asdict(DEFAULTS) == {**dataclasses.asdict(ChatSettings()), "seconds": None}


def test_cli_values_are_checked_by_chat_settings():
    parser = argparse.ArgumentParser()
    add_sampling_options(parser, music=False)
    with pytest.raises(ConfigError, match="top_p"):
        settings(parser.parse_args(["--top-p", "0"]))
