"""What a new password must be: NIST SP 800-63B §5.1.1.2, checked once for every door (CLI, API, console).

At least ``MIN_LENGTH`` characters, and not a value people are known to choose: the breached
passwords and common words of the frequency lists that the zxcvbn package ships (MIT licensed,
built from leaked password sets, Wikipedia and film subtitles), a single repeated character, or
the account's own name. No composition rules (NIST advises against them) and a generous maximum,
so that pass phrases fit.
"""

from __future__ import annotations

from functools import cache

from server.errors import ApiError

MIN_LENGTH = 10
MAX_LENGTH = 200
# zxcvbn's lists: leaked passwords first, then common English words and names from subtitles.
BLOCKLISTS = ("passwords", "english_wikipedia", "us_tv_and_film", "female_names", "male_names", "surnames")


@cache
def common_passwords() -> frozenset[str]:
    """Return the blocked values long enough to pass the length rule, lower-cased (loaded on first use)."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(
        word.lower() for name in BLOCKLISTS for word in FREQUENCY_LISTS.get(name, ()) if len(word) >= MIN_LENGTH
    )


def password_problem(password: str, username: str | None = None) -> str | None:
    """Return why ``password`` may not be used (English, says what to do), or ``None`` when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"Choose a password of at least {MIN_LENGTH} characters (this one has {len(password)})."
    if len(password) > MAX_LENGTH:
        return f"Choose a password of at most {MAX_LENGTH} characters."
    folded = password.lower()
    if len(set(folded)) == 1:
        return "Choose a password that is not one character repeated."
    if username and folded.strip() == username.lower():
        return "Choose a password that is not the user name."
    if folded in common_passwords():
        return "This password is in a list of commonly used passwords: choose another (a few words make a good one)."
    return None


def check_new_password(password: str, username: str | None = None) -> None:
    """Raise ``400 weak_password`` naming the rule when ``password`` may not be used."""
    problem = password_problem(password, username)
    if problem is not None:
        raise ApiError(400, "weak_password", problem, {"fields": {"password": [problem]}})
