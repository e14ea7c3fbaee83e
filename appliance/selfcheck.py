"""``appliance check``: a registry of self-checks, run in order, one line each with what to do.

A check is an async function of a :class:`Context` that returns a
:class:`Result`. :func:`register` files it under a name (the line's label)
and, if it only applies to one backend, that backend::

    @register("audio input", backend=("audio", "pyaudio"))
    async def pyaudio_input(context: Context) -> Result:
        ...
        return Result.failed("no device matches 'USB'", fix="run appliance devices")

For each name, the check registered for the configured backend runs (or
the one registered without a backend); a backend with no check of that name
is reported as a failure that says the backend is not available yet. Checks
live in the modules of :data:`CHECK_MODULES`, imported when checks run.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from appliance import config as config_module
from appliance.config import Config
from appliance.errors import ConfigError

logger = logging.getLogger(__name__)

CHECK_MODULES = ("appliance.checks", "appliance.hwchecks")
"""Modules whose import registers checks, in the order their checks run."""

PASS_MARK = "[ OK ]"
"""Starts the line of a check that passed."""
FAIL_MARK = "[FAIL]"
"""Starts the line of a check that failed."""

_KEY_SETTING = "upstream.api_key_file: "
"""How config problems with the key file are labelled (see ``config.load``)."""


@dataclass(frozen=True)
class Result:
    """What a check found.

    Attributes:
        ok: True if the check passed.
        detail: What was found, in plain words; never a secret.
        fix: For a failure, what to do about it.
    """

    ok: bool
    detail: str
    fix: str = ""

    @classmethod
    def passed(cls, detail: str) -> Result:
        """A pass, with what was found."""
        return cls(True, detail)

    @classmethod
    def failed(cls, detail: str, *, fix: str) -> Result:
        """A failure, with what was found and what to do about it."""
        return cls(False, detail, fix)


@dataclass
class Context:
    """What every check sees: the config file, the environment, the loaded config.

    Attributes:
        path: The config file.
        env: The environment (``APPLIANCE_*``, ``CREDENTIALS_DIRECTORY``).
        config: The validated configuration, or None if it has problems.
        config_problems: The problems of the configuration, but the key's.
        key_problems: The problems of the API key (file or credential).
    """

    path: Path
    env: Mapping[str, str]
    config: Config | None = None
    config_problems: tuple[str, ...] = ()
    key_problems: tuple[str, ...] = ()

    @classmethod
    def load(cls, path: Path, *, env: Mapping[str, str] | None = None) -> Context:
        """Loads the configuration at ``path``, keeping its problems apart from the key's."""
        env = os.environ if env is None else env
        try:
            return cls(path, env, config_module.load(path, env=env))
        except ConfigError as exc:
            key = tuple(p for p in exc.problems if _is_key_problem(p))
            rest = tuple(p for p in exc.problems if not _is_key_problem(p))
            return cls(path, env, None, rest, key)


def _is_key_problem(problem: str) -> bool:
    return problem.startswith(_KEY_SETTING) or f": {_KEY_SETTING}" in problem


CheckFn = Callable[[Context], Awaitable[Result]]
"""A self-check."""


@dataclass(frozen=True)
class Check:
    """A registered self-check.

    Attributes:
        name: The label of its line, e.g. ``audio input``.
        run: The check.
        backend: ``(section, backend)`` it applies to, e.g. ``("audio", "file")``;
            None: it applies whatever the backends.
    """

    name: str
    run: CheckFn
    backend: tuple[str, str] | None = None


@dataclass
class Registry:
    """Checks by name, in the order the names were first registered."""

    checks: list[Check] = field(default_factory=list)

    def register(
        self, name: str, *, backend: tuple[str, str] | None = None
    ) -> Callable[[CheckFn], CheckFn]:
        """A decorator that registers a check under ``name`` (see the module docstring).

        Args:
            name: The label of the line.
            backend: ``(section, backend)``: the check runs only when
                ``config.<section>.backend`` is that backend.

        Raises:
            ValueError: a check of that name and backend is registered already.
        """

        def decorate(run: CheckFn) -> CheckFn:
            if any(c.name == name and c.backend == backend for c in self.checks):
                raise ValueError(f"a check {name!r} for {backend} is registered already")
            self.checks.append(Check(name, run, backend))
            return run

        return decorate

    def names(self) -> list[str]:
        """The names, in order."""
        return list(dict.fromkeys(c.name for c in self.checks))

    def choose(self, name: str, *, config: Config | None) -> Check | Result:
        """The check to run for ``name``, or the failure to report instead of one."""
        candidates = [c for c in self.checks if c.name == name]
        for check in candidates:
            if check.backend is None:
                return check
        if config is None:
            return Result.failed(
                "not checked: the configuration has problems",
                fix="fix the configuration first (see the config line)",
            )
        section = candidates[0].backend[0] if candidates[0].backend else ""
        chosen = getattr(getattr(config, section), "backend", None)
        for check in candidates:
            if check.backend == (section, chosen):
                return check
        available = ", ".join(f'"{c.backend[1]}"' for c in candidates if c.backend)
        return Result.failed(
            f'{section}.backend = "{chosen}" is not available in this build yet',
            fix=f"use {section}.backend = {available} for now",
        )


REGISTRY = Registry()
"""The checks of ``appliance check``."""

register = REGISTRY.register
"""Registers a check with :data:`REGISTRY`; see :meth:`Registry.register`."""


def _masked(text: str, context: Context) -> str:
    """``text`` with the key masked: belt and braces, no check should ever show it."""
    key = context.config.api_key.reveal() if context.config is not None else ""
    return text.replace(key, config_module.MASK) if len(key) >= 8 else text


def format_line(name: str, *, result: Result) -> str:
    """One check's line, and for a failure a second line saying what to do."""
    line = f"{PASS_MARK if result.ok else FAIL_MARK} {name}: {result.detail}"
    if not result.ok and result.fix:
        line += f"\n       fix: {result.fix}"
    return line


async def run_checks(
    path: Path,
    *,
    out: TextIO,
    env: Mapping[str, str] | None = None,
    registry: Registry = REGISTRY,
) -> int:
    """Runs every check in order and prints its line to ``out`` as soon as it is known.

    Args:
        path: The config file.
        out: Where the lines go.
        env: The environment; ``None`` means ``os.environ``.
        registry: The checks; by default those of :data:`CHECK_MODULES`.

    Returns:
        0 if every check passed, else 1.
    """
    if registry is REGISTRY:
        for module in CHECK_MODULES:
            importlib.import_module(module)
    context = Context.load(path, env=env)
    failures = 0
    for name in registry.names():
        chosen = registry.choose(name, config=context.config)
        if isinstance(chosen, Result):
            result = chosen
        else:
            try:
                result = await chosen.run(context)
            except Exception as exc:  # a broken check is a failed line, not a crash
                logger.debug("check %s raised", name, exc_info=True)
                result = Result.failed(
                    f"the check itself failed: {type(exc).__name__}: {exc}",
                    fix="run with -v and report the traceback",
                )
        failures += not result.ok
        print(_masked(format_line(name, result=result), context), file=out, flush=True)
    total = len(registry.names())
    summary = "all checks passed" if not failures else f"{failures} of {total} checks failed"
    print(summary, file=out, flush=True)
    return 0 if not failures else 1
