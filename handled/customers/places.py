"""Where a facility can be: USPS state and territory abbreviations, and the timezones offered.

The state codes are the USPS two-letter abbreviations of the 50 states, the District of
Columbia and the inhabited territories that have ZIP codes (Publication 28, appendix B).
The military "states" (AA, AE, AP) are left out: no warehouse is there.
"""

from __future__ import annotations

import zoneinfo
from functools import lru_cache
from importlib import resources
from zoneinfo import available_timezones

USPS_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "AS": "American Samoa", "GU": "Guam", "MP": "Northern Mariana Islands", "PR": "Puerto Rico",
    "VI": "U.S. Virgin Islands", "FM": "Federated States of Micronesia", "MH": "Marshall Islands",
    "PW": "Palau",
}

# The zones US warehouses keep, offered first in the picker.
US_TIMEZONES = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles",
    "America/Anchorage", "Pacific/Honolulu", "America/Puerto_Rico", "Pacific/Guam", "Pacific/Pago_Pago",
)


# Groups of old names the tz database keeps only so old settings still work (US/Eastern, Etc/GMT+5).
LEGACY_GROUPS = ("US/", "Etc/", "SystemV/", "Brazil/", "Canada/", "Chile/", "Mexico/", "posix/", "right/")


@lru_cache(maxsize=1)
def known_timezones() -> frozenset[str]:
    """Every name the tz database answers to, old aliases included (a stored value stays valid)."""
    return frozenset(available_timezones())


def _zone_tab() -> set[str] | None:
    """The zones of zone.tab (one or more per country, Area/City, no aliases: Asia/Kolkata, not
    Asia/Calcutta), from the tzdata package or the system's database; None if neither has it."""
    try:
        text = (resources.files("tzdata.zoneinfo") / "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        text = None
        for folder in zoneinfo.TZPATH:
            try:
                text = open(f"{folder}/zone.tab", encoding="utf-8").read()
                break
            except OSError:
                continue
    if text is None:
        return None
    return {line.split("\t")[2] for line in text.splitlines()
            if line and not line.startswith("#") and len(line.split("\t")) >= 3}


@lru_cache(maxsize=1)
def offered_timezones() -> frozenset[str]:
    """The zones a facility may be given: canonical Area/City names only. Names without a '/'
    (GB, EST5EDT), the legacy groups and the backward-compatible aliases zone.tab leaves out
    (US/Eastern, Asia/Calcutta) are not offered; a row that holds one keeps it (services)."""
    listed = _zone_tab()
    names = known_timezones() & listed if listed else known_timezones()
    return frozenset(n for n in names if "/" in n and not n.startswith(LEGACY_GROUPS)) | set(US_TIMEZONES)


@lru_cache(maxsize=1)
def other_timezones() -> tuple[str, ...]:
    """Every other offered zone, sorted, for the rest of the picker."""
    return tuple(sorted(offered_timezones() - set(US_TIMEZONES)))
