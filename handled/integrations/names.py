"""File names: an integration's rule, the copies a browser makes, and what a name fixes.

A browser that already holds ``uszips.csv`` saves the next download as
``uszips (1).csv`` (Chrome, Edge) or ``uszips(1).csv`` (Firefox). Such a name
does not match the rule, but the name it was saved from does: ``judge_name``
then judges the file by that name, marks it ``renamed``, and keeps the sentence
the real name got. The service accepts a renamed file only once its content
proves what it is (the header, or for a header-less format the first data
record), and refuses it with that sentence otherwise.

Where the name carries data (the origin ZIP of ``10001.csv`` or ``007.xlsx``)
the context comes from the name without the suffix. ``scope`` is the part of
the context that says which rows of the table a file is about (its origin).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from handled.integrations.base import FileRefused, Integration

# "name (1).ext" or "name(12).ext", possibly twice ("name (1) (1).ext": a copy of a copy)
BROWSER_COPY = re.compile(r"(?P<stem>.*?\S)(?:\s?\(\d{1,4}\))+(?P<ext>\.[A-Za-z0-9]{1,8})")


def browser_original(name: str) -> str | None:
    """The name a browser-renamed download was saved from, or None if ``name`` is not one."""
    match = BROWSER_COPY.fullmatch(name)
    if match is None:
        return None
    return match.group("stem") + match.group("ext")


@dataclass(frozen=True)
class JudgedName:
    """A file name judged by an integration's rule."""

    name: str                    # the name as given (kept in the run history)
    judged: str                  # the name the rule matched: ``name`` without a browser's " (N)"
    context: dict                # the rule's named groups (e.g. origin), from ``judged``
    refusal: FileRefused | None = field(default=None, compare=False)  # what ``name`` itself got

    @property
    def renamed(self) -> bool:
        return self.judged != self.name


def judge_name(integration: Integration, name: str) -> JudgedName:
    """Match ``name`` (or the name a browser copy was saved from) against the rule;
    FileRefused with today's sentence when neither matches."""
    try:
        return JudgedName(name, name, integration.match_name(name))
    except FileRefused as refusal:
        original = browser_original(name)
        if not original or not integration.name_pattern.fullmatch(original):
            raise
        return JudgedName(name, original, integration.match_name(original), refusal)


def header_refusal(judged: JudgedName, wrong) -> FileRefused:
    """Why a browser-renamed file whose header is another file's is refused: its name is a copy of
    a name this integration reads, so the sentence is about the header, not the name."""
    return FileRefused(f"{judged.name!r} is a browser's copy of the name {judged.judged}, but its header "
                       f"does not match that file: expected {wrong.expected}; found {wrong.found}.")


def scope_of(integration: Integration, context: dict) -> dict:
    """The values of the context that fix which rows a file is about ({"origin": "10001"})."""
    return {key: context.get(key) for _, key in integration.scope}


def scope_of_name(integration: Integration, name: str) -> dict | None:
    """``scope_of`` for a file name from the history; None if the rule no longer matches it."""
    try:
        return scope_of(integration, judge_name(integration, name).context)
    except FileRefused:
        return None


def describe_scope(scope: dict) -> str:
    """``{"origin": "10001"}`` -> ``origin 10001``."""
    return ", ".join(f"{key} {value}" for key, value in scope.items())


def read_by_any(name: str, integrations) -> bool:
    """Does any integration's rule accept ``name`` (or the name a browser copy was saved from)?"""
    original = browser_original(name)
    return any(i.name_pattern.fullmatch(name) or (original and i.name_pattern.fullmatch(original))
               for i in integrations)
