"""Tests of appliance.config: layers, every problem listed, the key kept secret."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import os
import textwrap
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance import config
from appliance.config import (
    AudioConfig,
    ButtonConfig,
    Config,
    HardwareConfig,
    LedConfig,
    Secret,
    UpstreamConfig,
    WatchdogConfig,
)
from appliance.errors import ConfigError

KEY = "sk-test-0123456789abcdefghij"


def write_key(tmp_path: Path, content: str = KEY + "\n", *, mode: int = 0o600) -> Path:
    key_file = tmp_path / "openai-api-key"
    key_file.write_text(content)
    os.chmod(key_file, mode)
    return key_file


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path


def load(
    tmp_path: Path,
    toml: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Loads with a good key file, given as the first override (so later ones win)."""
    layered = {"upstream.api_key_file": write_key(tmp_path), **(overrides or {})}
    path = None if toml is None else write_toml(tmp_path, toml)
    return config.load(path, env=env or {}, overrides=layered)


def problems(
    tmp_path: Path,
    toml: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, toml, env=env, overrides=overrides)
    return info.value.problems


def one_problem(tmp_path: Path, toml: str | None = None, **kwargs: object) -> str:
    found = problems(tmp_path, toml, **kwargs)  # type: ignore[arg-type]
    assert len(found) == 1, found
    return found[0]


# Secret


def test_secret_is_masked_everywhere() -> None:
    secret = Secret(KEY)
    assert str(secret) == repr(secret) == f"{secret}" == "********"
    assert secret.reveal() == KEY
    assert KEY not in repr(Config(api_key=secret))


def test_secret_compares_by_value() -> None:
    assert Secret(KEY) == Secret(KEY)
    assert Secret(KEY) != Secret("sk-other")
    assert Secret(KEY) != KEY
    assert hash(Secret(KEY)) == hash(Secret(KEY))
    assert hash(Secret(KEY)) != hash(KEY)


# Defaults and layers


def test_defaults_are_the_contract(tmp_path: Path) -> None:
    loaded = load(tmp_path)
    assert loaded.path is None
    assert loaded.api_key.reveal() == KEY  # the trailing newline is stripped
    assert loaded.upstream == UpstreamConfig(api_key_file=tmp_path / "openai-api-key")
    assert loaded.audio == AudioConfig()
    assert loaded.button == ButtonConfig()
    assert loaded.watchdog == WatchdogConfig()
    assert UpstreamConfig().url == "wss://api.openai.com/v1/realtime"
    assert UpstreamConfig().model == "gpt-realtime-2"
    assert UpstreamConfig().api_key_file == Path("/etc/appliance/openai-api-key")
    assert (AudioConfig().min_turn_ms, AudioConfig().max_turn_s, AudioConfig().hold_s) == (
        150,
        60,
        30,
    )
    assert ButtonConfig().script == ((0.5, "press"), (2.5, "release"))
    assert WatchdogConfig().reconnect_base_s == 0.5
    assert str(config.DEFAULT_PATH) == "/etc/appliance/appliance.toml"
    assert config.CREDENTIAL_NAME.startswith("openai-api-key")


def test_every_field_has_a_docstring() -> None:
    tree = ast.parse(Path(config.__file__).read_text())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    for cls in (
        UpstreamConfig,
        AudioConfig,
        ButtonConfig,
        WatchdogConfig,
        LedConfig,
        HardwareConfig,
        Config,
    ):
        body = classes[cls.__name__].body
        documented = {
            statement.target.id
            for statement, following in itertools.pairwise(body)
            if isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        }
        assert documented == {field.name for field in dataclasses.fields(cls)}


def test_file_overrides_defaults(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        textwrap.dedent("""
        [upstream]
        url = "ws://127.0.0.1:8765/v1/realtime"
        voice = "cedar"
        [audio]
        min_turn_ms = 200
        max_turn_s = 45
        earcons = false
        [button]
        backend = "script"
        script = [[0, "press"], [1.5, "release"], [3, "press"], [4, "release"]]
        exit_after_script = true
        [watchdog]
        reconnect_max_s = 10
        """),
    )
    assert loaded.path == tmp_path / "appliance.toml"
    assert loaded.upstream.url == "ws://127.0.0.1:8765/v1/realtime"
    assert loaded.upstream.voice == "cedar"
    assert loaded.audio.min_turn_ms == 200
    assert loaded.audio.max_turn_s == 45.0
    assert isinstance(loaded.audio.max_turn_s, float)
    assert loaded.audio.earcons is False
    assert loaded.button.script == (
        (0.0, "press"),
        (1.5, "release"),
        (3.0, "press"),
        (4, "release"),
    )
    assert loaded.button.exit_after_script is True
    assert loaded.watchdog.reconnect_max_s == 10.0


def test_environment_overrides_file_and_overrides_override_environment(tmp_path: Path) -> None:
    toml = "[audio]\nmin_turn_ms = 200\nhold_s = 5\n[upstream]\nvoice = 'ash'\n"
    env = {"APPLIANCE_AUDIO_MIN_TURN_MS": "300", "APPLIANCE_UPSTREAM_VOICE": "echo"}
    loaded = load(tmp_path, toml, env=env, overrides={"upstream.voice": "sage"})
    assert loaded.audio.min_turn_ms == 300
    assert loaded.audio.hold_s == 5.0
    assert loaded.upstream.voice == "sage"


@pytest.mark.parametrize(
    ("name", "text", "section", "key", "value"),
    [
        ("APPLIANCE_UPSTREAM_URL", "ws://localhost:1/x", "upstream", "url", "ws://localhost:1/x"),
        ("APPLIANCE_UPSTREAM_ALLOW_INSECURE", "yes", "upstream", "allow_insecure", True),
        ("APPLIANCE_AUDIO_EARCONS", "False", "audio", "earcons", False),
        ("APPLIANCE_AUDIO_EARCONS", "0", "audio", "earcons", False),
        ("APPLIANCE_AUDIO_MIN_TURN_MS", " 250 ", "audio", "min_turn_ms", 250),
        ("APPLIANCE_AUDIO_MAX_TURN_S", "2.5", "audio", "max_turn_s", 2.5),
        ("APPLIANCE_BUTTON_BACKEND", "keyboard", "button", "backend", "keyboard"),
        (
            "APPLIANCE_BUTTON_SCRIPT",
            '[[1, "press"], [2, "release"]]',
            "button",
            "script",
            ((1.0, "press"), (2.0, "release")),
        ),
        ("APPLIANCE_BUTTON_SCRIPT", "[]", "button", "script", ()),
        ("APPLIANCE_WATCHDOG_PING_INTERVAL_S", "3", "watchdog", "ping_interval_s", 3.0),
    ],
)
def test_environment_values_are_parsed_to_the_field_type(
    tmp_path: Path, name: str, text: str, section: str, key: str, value: object
) -> None:
    loaded = load(tmp_path, env={name: text, "UNRELATED": "x"})
    assert getattr(getattr(loaded, section), key) == value


def test_environment_key_file(tmp_path: Path) -> None:
    key_file = write_key(tmp_path)
    env = {"APPLIANCE_UPSTREAM_API_KEY_FILE": str(key_file)}
    loaded = config.load(None, env=env)
    assert loaded.upstream.api_key_file == key_file
    assert loaded.api_key == Secret(KEY)


def test_overrides_accept_paths_for_strings(tmp_path: Path) -> None:
    wav = tmp_path / "in.wav"
    wav.write_bytes(b"RIFF")
    loaded = load(
        tmp_path,
        overrides={"audio.backend": "file", "audio.input": wav, "audio.output": tmp_path / "o.wav"},
    )
    assert loaded.audio.input == str(wav)
    assert loaded.audio.output == str(tmp_path / "o.wav")


# Problems: the file


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(
            tmp_path / "nope.toml", env={}, overrides={"upstream.api_key_file": write_key(tmp_path)}
        )
    assert info.value.problems == (f"{tmp_path / 'nope.toml'}: no such config file",)


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, "[audio]\nmin_turn_ms = 150\nearcons = yes\n")
    assert problem.startswith(f"{tmp_path / 'appliance.toml'}: TOML syntax error: ")
    assert "line 3" in problem


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "appliance.toml"
    path.write_bytes(b"[audio]\n# \xff\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, env={}, overrides={"upstream.api_key_file": write_key(tmp_path)})
    assert info.value.problems == (f"{path}: not UTF-8 text (byte 10)",)


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path, env={}, overrides={"upstream.api_key_file": write_key(tmp_path)})
    assert info.value.problems[0].startswith(f"{tmp_path}: cannot read: ")


def test_unknown_sections_and_keys_suggest_a_fix(tmp_path: Path) -> None:
    found = problems(tmp_path, "[audoi]\nx = 1\n[audio]\nmin_turn = 3\nzzz = 1\n[zzzz]\n")
    path = tmp_path / "appliance.toml"
    assert found == (
        f"{path}: unknown section [audoi]; did you mean audio?",
        f"{path}: unknown key audio.min_turn; did you mean min_turn_ms?",
        f"{path}: unknown key audio.zzz",
        f"{path}: unknown section [zzzz]",
    )


def test_key_outside_its_section(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, 'url = "wss://x"\n[audio]\n')
    assert problem.endswith("url is not a section: it belongs in [upstream]")


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "audio = 3\n").endswith("audio: expected a [audio] table, got 3")


# Problems: types


def test_wrong_type_message_names_file_and_key(tmp_path: Path) -> None:
    problem = one_problem(tmp_path, '[audio]\nmin_turn_ms = "abc"\n')
    assert (
        problem
        == f'{tmp_path / "appliance.toml"}: audio.min_turn_ms: expected an integer, got "abc"'
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[audio]\nmin_turn_ms = true", "audio.min_turn_ms: expected an integer, got true"),
        ("[audio]\nmin_turn_ms = 1.5", "audio.min_turn_ms: expected an integer, got 1.5"),
        ("[audio]\nmax_turn_s = false", "audio.max_turn_s: expected a number, got false"),
        ("[audio]\nmax_turn_s = inf", "audio.max_turn_s: expected a number, got inf"),
        ("[audio]\nearcons = 1", "audio.earcons: expected true or false, got 1"),
        ("[upstream]\nmodel = 4", "upstream.model: expected a string, got 4"),
        ("[upstream]\ninstructions = []", "upstream.instructions: expected a string, got []"),
        (
            '[audio]\nbackend = "alsa"',
            'audio.backend: expected one of "pyaudio", "file", got "alsa"',
        ),
        (
            '[button]\nbackend = "gpoi"',
            'button.backend: expected one of "gpio", "keyboard", "script", got "gpoi"; '
            "did you mean gpio?",
        ),
        ('[button]\nscript = "press"', "button.script: expected a list of"),
        (
            '[button]\nscript = [[1, "push"]]',
            'button.script: step 1: expected [seconds, "press" or',
        ),
        ("[button]\nscript = [[1]]", "button.script: step 1: expected"),
        ('[button]\nscript = [[true, "press"]]', "button.script: step 1: expected"),
    ],
)
def test_wrong_types(tmp_path: Path, toml: str, expected: str) -> None:
    problem = one_problem(tmp_path, toml + "\n")
    assert problem.startswith(f"{tmp_path / 'appliance.toml'}: {expected}")


def test_ints_are_accepted_for_floats(tmp_path: Path) -> None:
    loaded = load(tmp_path, "[watchdog]\nping_timeout_s = 3\n")
    assert loaded.watchdog.ping_timeout_s == 3.0


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("APPLIANCE_AUDIO_MIN_TURN_MS", "abc", 'audio.min_turn_ms: expected an integer, got "abc"'),
        ("APPLIANCE_AUDIO_MIN_TURN_MS", "1.5", "audio.min_turn_ms: expected an integer"),
        ("APPLIANCE_AUDIO_HOLD_S", "nan", 'audio.hold_s: expected a number, got "nan"'),
        ("APPLIANCE_AUDIO_EARCONS", "maybe", 'audio.earcons: expected true or false, got "maybe"'),
        ("APPLIANCE_BUTTON_SCRIPT", "[[1,", "button.script: expected a TOML array"),
        (
            "APPLIANCE_AUDIO_MINTURNMS",
            "1",
            "unknown key audio.minturnms; did you mean min_turn_ms?",
        ),
        ("APPLIANCE_AUIDO_EARCONS", "1", "unknown section [auido]; did you mean audio?"),
        ("APPLIANCE_AUDIO", "1", "expected APPLIANCE_AUDIO_<KEY>"),
    ],
)
def test_environment_problems(tmp_path: Path, name: str, text: str, expected: str) -> None:
    problem = one_problem(tmp_path, env={name: text})
    assert problem.startswith(f"${name}: {expected}")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"audio": 1}, "overrides: audio: expected a key like audio.min_turn_ms"),
        ({"audio.min.turn": 1}, "overrides: audio.min.turn: expected a key like"),
        ({"sound.earcons": 1}, "overrides: unknown section [sound]"),
        (
            {"audio.min_turn_ms": "200"},
            'overrides: audio.min_turn_ms: expected an integer, got "200"',
        ),
        (
            {"audio.min_turn_ms": None},
            "overrides: audio.min_turn_ms: expected an integer, got None",
        ),
    ],
)
def test_override_problems(tmp_path: Path, overrides: dict[str, object], expected: str) -> None:
    assert one_problem(tmp_path, overrides=overrides).startswith(expected)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    toml = """
        [upstream]
        url = "https://api.openai.com/v1/realtime"
        model = ""
        voice = "marine"
        [audio]
        min_turn_ms = -1
        max_turn_s = 0
        hold_s = -3
        [button]
        pin = 28
        [watchdog]
        ping_interval_s = 0
        reconnect_base_s = 60
        [bogus]
    """
    toml = textwrap.dedent(toml)
    found = problems(tmp_path, toml, env={"APPLIANCE_AUDIO_EARCONS": "maybe"})
    keys = [
        "[bogus]",
        "audio.earcons",
        "upstream.url",
        "upstream.model",
        "upstream.voice",
        "audio.min_turn_ms",
        "audio.max_turn_s",
        "audio.hold_s",
        "button.pin",
        "watchdog.ping_interval_s",
        "watchdog.reconnect_base_s",
    ]
    assert len(found) == len(keys), found
    for key, problem in zip(keys, found, strict=True):
        assert key in problem
    assert "did you mean marin?" in found[4]
    error = ConfigError(found)
    assert str(error).startswith(f"invalid configuration ({len(keys)} problems):\n  - ")


def test_a_mistyped_value_is_not_also_reported_by_the_checks(tmp_path: Path) -> None:
    toml = '[watchdog]\nreconnect_max_s = "x"\nreconnect_base_s = 60\n'
    assert one_problem(tmp_path, toml).endswith('expected a number, got "x"')


# Problems: values


@pytest.mark.parametrize(
    "url",
    [
        "wss://api.openai.com/v1/realtime",
        "ws://localhost:8765/v1/realtime",
        "ws://LOCALHOST/",
        "ws://127.0.0.1:1/",
        "ws://127.8.9.10/",
        "ws://[::1]:8765/",
    ],
)
def test_good_urls(tmp_path: Path, url: str) -> None:
    assert load(tmp_path, overrides={"upstream.url": url}).upstream.url == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1/realtime", "expected a ws:// or wss:// URL"),
        ("api.openai.com", "expected a ws:// or wss:// URL"),
        ("ws://example.com/v1", "ws:// (no TLS) is only allowed to a loopback host"),
        ("ws://192.168.1.2/v1", "ws:// (no TLS) is only allowed to a loopback host"),
        ("ws://localhost.example.com/", "ws:// (no TLS) is only allowed to a loopback host"),
        ("wss:///v1", "no host in"),
        ("wss://host:99999/", "not a valid URL"),
    ],
)
def test_bad_urls(tmp_path: Path, url: str, expected: str) -> None:
    problem = one_problem(tmp_path, overrides={"upstream.url": url})
    assert problem.startswith(f"overrides: upstream.url: {expected}")


def test_insecure_allowed_on_request(tmp_path: Path) -> None:
    toml = '[upstream]\nurl = "ws://192.168.1.2:8765/"\nallow_insecure = true\n'
    assert load(tmp_path, toml).upstream.allow_insecure is True


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"upstream.model": " "}, "upstream.model: must not be empty"),
        ({"upstream.voice": "Marin"}, "upstream.voice: expected one of alloy, ash,"),
        ({"audio.min_turn_ms": -1}, "audio.min_turn_ms: must be 0 or more, got -1"),
        ({"audio.max_turn_s": 0}, "audio.max_turn_s: must be more than 0, got 0"),
        ({"audio.hold_s": -0.5}, "audio.hold_s: must be more than 0, got -0.5"),
        (
            {"audio.min_turn_ms": 2000, "audio.max_turn_s": 2},
            "audio.min_turn_ms: must be less than",
        ),
        ({"audio.input": ""}, "audio.input: must not be empty"),
        ({"button.pin": 28}, "button.pin: expected a GPIO pin (BCM) from 0 to 27, got 28"),
        ({"button.pin": -1}, "button.pin: expected a GPIO pin"),
        ({"watchdog.response_timeout_s": 0}, "watchdog.response_timeout_s: must be more than 0"),
        ({"watchdog.rotate_before_expiry_s": -1}, "watchdog.rotate_before_expiry_s: must be more"),
        ({"watchdog.reconnect_base_s": 31}, "watchdog.reconnect_base_s: must not exceed"),
    ],
)
def test_bad_values(tmp_path: Path, overrides: dict[str, object], expected: str) -> None:
    assert one_problem(tmp_path, overrides=overrides).startswith(f"overrides: {expected}")


def test_min_turn_zero_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, overrides={"audio.min_turn_ms": 0}).audio.min_turn_ms == 0


def test_equal_reconnect_base_and_max_are_allowed(tmp_path: Path) -> None:
    loaded = load(tmp_path, overrides={"watchdog.reconnect_base_s": 30})
    assert loaded.watchdog.reconnect_base_s == loaded.watchdog.reconnect_max_s


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([(1, "release")], ['step 1: expected "press"']),
        ([(1, "press"), (2, "press")], ['step 2: expected "release"']),
        ([(-1, "press")], ["step 1: -1 seconds is negative"]),
        ([(2, "press"), (1, "release")], ["step 2: 1 seconds is before step 1"]),
        (
            [(2, "release"), (1, "release")],
            ['step 1: expected "press"', "step 2: 1 seconds is before step 1"],
        ),
    ],
)
def test_bad_scripts(tmp_path: Path, script: list[object], expected: list[str]) -> None:
    found = problems(tmp_path, overrides={"button.script": script})
    assert len(found) == len(expected), found
    for problem, detail in zip(found, expected, strict=True):
        assert problem.startswith(f"overrides: button.script: {detail}")


def test_good_scripts(tmp_path: Path) -> None:
    script = [(0, "press"), (0, "release"), (0.5, "press")]  # ending held is the script's choice
    loaded = load(tmp_path, overrides={"button.script": script})
    assert loaded.button.script == ((0.0, "press"), (0.0, "release"), (0.5, "press"))


def test_file_backend_needs_files(tmp_path: Path) -> None:
    found = problems(tmp_path, overrides={"audio.backend": "file"})
    assert found == (
        'overrides: audio.input: with backend = "file", expected an existing WAV file, got default',
        'overrides: audio.output: with backend = "file", expected a WAV path in an existing '
        "folder, got default",
    )
    found = problems(
        tmp_path,
        overrides={
            "audio.backend": "file",
            "audio.input": str(tmp_path / "missing.wav"),
            "audio.output": str(tmp_path / "no" / "out.wav"),
        },
    )
    assert [problem.split(":")[1] for problem in found] == [" audio.input", " audio.output"]


# The credential


def test_credential_directory_wins(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "openai-api-key").write_text("  sk-from-systemd-credential \n")
    os.chmod(credentials / "openai-api-key", 0o440)  # systemd's business, not checked
    env = {"CREDENTIALS_DIRECTORY": str(credentials)}
    loaded = load(tmp_path, env=env)
    assert loaded.api_key.reveal() == "sk-from-systemd-credential"


def test_credential_directory_without_our_credential_falls_back(tmp_path: Path) -> None:
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "empty")}
    assert load(tmp_path, env=env).api_key.reveal() == KEY


def test_key_file_from_toml(tmp_path: Path) -> None:
    key_file = write_key(tmp_path, mode=0o400)
    path = write_toml(tmp_path, f'[upstream]\napi_key_file = "{key_file}"\n')
    assert config.load(path, env={}).api_key.reveal() == KEY


def test_no_key_at_all(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here"
    path = write_toml(tmp_path, f'[upstream]\napi_key_file = "{missing}"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    (problem,) = info.value.problems
    assert problem.startswith(f"{path}: upstream.api_key_file: no API key: {missing} does not")
    assert "openai-api-key" in problem


def test_default_key_file_named_when_missing(tmp_path: Path) -> None:
    if config.UpstreamConfig().api_key_file.exists():
        pytest.skip("this machine has a real key file")
    with pytest.raises(ConfigError) as info:
        config.load(None, env={})
    (problem,) = info.value.problems
    assert "upstream.api_key_file: no API key: /etc/appliance/openai-api-key" in problem


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o444])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = write_key(tmp_path, mode=mode)
    with pytest.raises(ConfigError) as info:
        config.load(None, env={}, overrides={"upstream.api_key_file": key_file})
    (problem,) = info.value.problems
    assert f"{key_file} is readable by group or others (mode {mode:04o})" in problem
    assert problem.endswith(f"chmod 600 {key_file}")
    assert KEY not in problem
    assert KEY not in str(info.value) and KEY not in repr(info.value)


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o620, 0o700])
def test_private_key_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    key_file = write_key(tmp_path, mode=mode)
    loaded = config.load(None, env={}, overrides={"upstream.api_key_file": key_file})
    assert loaded.api_key.reveal() == KEY


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        (" \n\n", "is empty"),
        ("sk-one\nsk-two\n", "has spaces, control characters or several lines"),
        (b"sk-\xff\xfe".decode("latin-1"), "is not UTF-8 text"),
    ],
)
def test_bad_key_files(tmp_path: Path, content: str, expected: str) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(content.encode("latin-1"))
    os.chmod(key_file, 0o600)
    with pytest.raises(ConfigError) as info:
        config.load(None, env={}, overrides={"upstream.api_key_file": key_file})
    (problem,) = info.value.problems
    assert expected in problem
    assert "sk-one" not in str(info.value)


def test_key_file_that_is_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    folder.mkdir(mode=0o700)
    with pytest.raises(ConfigError) as info:
        config.load(None, env={}, overrides={"upstream.api_key_file": folder})
    assert f"cannot read the API key from {folder}: " in info.value.problems[0]


def test_unreadable_key_file(tmp_path: Path) -> None:
    """Root reads any file, so as root the load runs in a forked child that became nobody."""
    key_file = write_key(tmp_path, mode=0o000)
    if os.geteuid() != 0:
        with pytest.raises(ConfigError) as info:
            config.load(None, env={}, overrides={"upstream.api_key_file": key_file})
        assert "Permission denied" in info.value.problems[0]
        return
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, try, report through the pipe, never return
        try:
            os.setgid(65534)
            os.setuid(65534)
            config.load(None, env={}, overrides={"upstream.api_key_file": key_file})
        except ConfigError as exc:
            os.write(writable, exc.problems[0].encode())
        finally:
            os._exit(0)
    os.close(writable)
    with os.fdopen(readable, "rb") as pipe:
        problem = pipe.read().decode()
    os.waitpid(pid, 0)
    assert "Permission denied" in problem
    assert "sk-" not in problem


# The key never shows


@pytest.mark.parametrize(
    "source",
    [
        {"toml": f'[upstream]\napi_key = "{KEY}"\n'},
        {"toml": f'api_key = "{KEY}"\n'},
        {"env": {"APPLIANCE_UPSTREAM_API_KEY": KEY}},
        {"overrides": {"upstream.api_key": KEY}},
    ],
)
def test_the_key_is_never_a_config_value(tmp_path: Path, source: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **source)  # type: ignore[arg-type]
    (problem,) = info.value.problems
    assert "put the key in a file (chmod 600) and set upstream.api_key_file" in problem
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_key_file_given_as_config_file_does_not_leak(tmp_path: Path) -> None:
    key_file = write_key(tmp_path)
    with pytest.raises(ConfigError) as info:
        config.load(key_file, env={}, overrides={"upstream.api_key_file": key_file})
    assert info.value.problems[0].startswith(f"{key_file}: TOML syntax error")
    assert KEY not in str(info.value) and KEY not in repr(info.value)


def test_key_pasted_into_another_value_does_not_leak(tmp_path: Path) -> None:
    found = problems(tmp_path, f'[upstream]\nvoice = "{KEY}"\n[audio]\n{KEY} = 1\n')
    assert len(found) == 2
    assert KEY not in " ".join(found)
    assert 'got "********"' in found[1]


def test_a_read_key_is_masked_in_other_problems(tmp_path: Path) -> None:
    # The key read fine, and also turns up inside another bad value.
    (problem,) = problems(tmp_path, overrides={"upstream.url": f"https://x/{KEY}"})
    assert KEY not in problem
    assert problem.endswith('got "https://x/********"')


# render


def test_render_masks_the_key_and_shows_every_value(tmp_path: Path) -> None:
    loaded = load(tmp_path, "[audio]\nmin_turn_ms = 220\n")
    text = config.render(loaded)
    assert KEY not in text
    document = tomllib.loads(text)
    assert document["upstream"]["api_key"] == "********"
    assert document["audio"]["min_turn_ms"] == 220
    assert list(document) == ["upstream", "audio", "button", "watchdog", "led", "hardware"]
    assert f"# read from {tmp_path / 'appliance.toml'}" in text


def test_render_round_trips(tmp_path: Path) -> None:
    loaded = load(
        tmp_path,
        overrides={
            "upstream.instructions": 'Say "hi"\\ then\n\tstop. \x7f\x00 ünïcödé 🎉',
            "button.script": [(1e-05, "press"), (0.25, "release")],
            "watchdog.reconnect_max_s": 1e16,
        },
    )
    text = config.render(loaded).replace('api_key = "********"\n', "")
    again = config.load(write_toml(tmp_path, text), env={})
    assert dataclasses.replace(again, path=None) == loaded


@given(st.text())
def test_render_quotes_any_string(text: str) -> None:
    rendered = config.render(Config(upstream=UpstreamConfig(instructions=text)))
    assert tomllib.loads(rendered)["upstream"]["instructions"] == text


# Devices and hardware profiles


def test_a_profile_supplies_defaults_and_explicit_settings_win(tmp_path: Path) -> None:
    loaded = load(tmp_path, '[hardware]\nprofile = "aiy-voice"\n[led]\npin = 24\n')
    assert (loaded.button.pin, loaded.button.pull, loaded.button.active) == (23, "up", "low")
    assert (loaded.led.kind, loaded.led.pin) == ("pwm", 24)
    assert (loaded.audio.input_rate_hz, loaded.audio.output_rate_hz) == (48_000, 48_000)
    desktop = load(tmp_path, env={"APPLIANCE_HARDWARE_PROFILE": "desktop"})
    assert (desktop.button.backend, desktop.led.kind) == ("keyboard", "none")
    assert load(tmp_path).led.kind == "none"  # no profile: no LED


def test_muted_cues_from_toml_and_environment(tmp_path: Path) -> None:
    loaded = load(tmp_path, '[audio]\nmuted_cues = ["reconnected", "too_short"]\n')
    assert loaded.audio.muted_cues == ("reconnected", "too_short")
    env = {"APPLIANCE_AUDIO_MUTED_CUES": "error, listening"}
    assert load(tmp_path, env=env).audio.muted_cues == ("error", "listening")


def test_every_device_problem_is_listed_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[hardware]
profile = "respeaker"
[audio]
muted_cues = ["listenin"]
input_rate_hz = 4000
period_ms = 500
prebuffer_ms = -1
stall_s = 5
lost_exit_s = 3
[button]
pull = "down"
active = "low"
debounce_ms = 900
[led]
kind = "rgb"
red_pin = 17
green_pin = 30
blue_pin = 17
""",
    )
    text = "\n".join(found)
    for expected in (
        'hardware.profile: expected "" or one of "generic"',
        "audio.muted_cues: expected cues from listening",
        "did you mean listening?",
        "audio.input_rate_hz: expected 0 (automatic) or a rate from 8000 to 192000 Hz, got 4000",
        "audio.period_ms: expected 5 to 100 milliseconds, got 500",
        "audio.prebuffer_ms: expected 0 to 1000 milliseconds, got -1",
        "audio.lost_exit_s: must not be less than audio.stall_s (5 s)",
        'button.active: a pull-down button reads high when held: set button.active = "high"',
        "button.debounce_ms: expected 0 to 500 milliseconds, got 900",
        "led.red_pin: GPIO17 is the button's pin (button.pin)",
        "led.green_pin: expected a GPIO pin (BCM) from 0 to 27, got 30",
        "led.red_pin: the red, green and blue pins must differ",
    ):
        assert expected in text, (expected, found)
    assert len(found) == 12, found


def test_a_mistyped_profile_is_one_problem(tmp_path: Path) -> None:
    assert one_problem(tmp_path, "[hardware]\nprofile = 3\n").endswith(
        "hardware.profile: expected a string, got 3"
    )
    assert "audio.muted_cues: expected a list of names" in one_problem(
        tmp_path, "[audio]\nmuted_cues = 3\n"
    )
