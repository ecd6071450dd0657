"""Text normalisation: turn written text into the words a reader would say.

espeak-ng reads plain digits itself, but (1.52, en-us) it reads ``$3.50`` as "dollar
three point five zero", ``1999`` as "nineteen hundred ninety nine", ``2010`` as "two
thousand ten", ``20°C`` as "twenty degrees C", keeps the colon of ``10:30`` as a
pause and the period of ``Dr.`` as a sentence end. Normalising English text here
makes the readings explicit and testable. For other languages only language-neutral
cleanup is applied (unicode quotes, dashes, ellipses, whitespace); espeak-ng's own
number rules for that language are better than anything we could write here.

English rules, in the order they are applied::

    Mr. / Dr. / St. / etc. / vs. / e.g. ...   -> mister / doctor / saint|street / et cetera ...
    $3.50  £5  €1,000  $2.5 million  50¢      -> three dollars and fifty cents ...
    10:30  10:05  10:00  3pm  10:30 a.m.      -> ten thirty / ten oh five / ten o'clock / three PM
    50%  -3.5%                                -> fifty percent / minus three point five percent
    20°C  1°  72°F                            -> twenty degrees Celsius / one degree ...
    21st  2nd  100th                          -> twenty-first / second / one hundredth
    1990s  '80s                               -> nineteen nineties / eighties
    #5                                        -> number five
    1999  2005  2010  1,234  007  3.14  -7    -> nineteen ninety-nine / two thousand five /
                                                 twenty ten / one thousand two hundred
                                                 thirty-four / zero zero seven /
                                                 three point one four / minus seven
    &  +  @  =  %  °                          -> and / plus / at / equals / percent / degrees

A bare four-digit integer from 1100 to 2099 is read as a year ("fifteen hundred",
"twenty forty-eight"); write ``1,500`` to get "one thousand five hundred".
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "normalize_text",
    "number_to_words",
    "ordinal_to_words",
    "year_to_words",
    "decimal_to_words",
]

# ---------------------------------------------------------------------------
# Numbers to words
# ---------------------------------------------------------------------------

_ONES = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
    "seventeen", "eighteen", "nineteen",
]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SCALES = ["", "thousand", "million", "billion", "trillion", "quadrillion", "quintillion"]
# Numbers at or above this are read digit by digit: nobody says "one sextillion ...".
_MAX_CARDINAL = 10 ** (3 * len(_SCALES))

_ORDINAL_IRREGULAR = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}


def _below_thousand(n: int) -> str:
    """Words for 0 < n < 1000, American style (no "and")."""
    parts = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        parts.append(f"{_ONES[hundreds]} hundred")
    if rest:
        if rest < 20:
            parts.append(_ONES[rest])
        else:
            tens, ones = divmod(rest, 10)
            parts.append(_TENS[tens] + (f"-{_ONES[ones]}" if ones else ""))
    return " ".join(parts)


def number_to_words(n: int) -> str:
    """Cardinal words for an integer: ``1234 -> "one thousand two hundred thirty-four"``.

    Negative numbers get "minus". Integers of 10**21 and above are read digit by
    digit.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n == 0:
        return "zero"
    if n >= _MAX_CARDINAL:
        return _digits_to_words(str(n))
    parts = []
    scale = 0
    while n:
        n, chunk = divmod(n, 1000)
        if chunk:
            words = _below_thousand(chunk)
            parts.append(f"{words} {_SCALES[scale]}" if scale else words)
        scale += 1
    return " ".join(reversed(parts))


def ordinal_to_words(n: int) -> str:
    """Ordinal words: ``21 -> "twenty-first"``, ``100 -> "one hundredth"``."""
    words = number_to_words(n)
    # Only the last word changes: "twenty-one" -> "twenty-first", "one hundred" -> "one hundredth".
    head, sep, last = words.rpartition(" ")
    prefix, hyphen, last = last.rpartition("-")
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + prefix + hyphen + last


def year_to_words(n: int) -> str:
    """Words for a year the way it is spoken.

    ``1999 -> "nineteen ninety-nine"``, ``1905 -> "nineteen oh five"``,
    ``1900 -> "nineteen hundred"``, ``2000 -> "two thousand"``,
    ``2005 -> "two thousand five"``, ``2010 -> "twenty ten"``. Years outside
    1000-9999 and the x000 years are read as cardinals.
    """
    if not 1000 <= n <= 9999 or n % 1000 == 0:
        return number_to_words(n)
    if 2000 < n < 2010:
        return number_to_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    if low < 10:
        return f"{number_to_words(high)} oh {_ONES[low]}"
    return f"{number_to_words(high)} {number_to_words(low)}"


def _plural(words: str) -> str:
    """Plural of the last word of a number: "nineteen ninety" -> "nineteen nineties"."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    if words.endswith("x"):  # "six" -> "sixes"
        return words + "es"
    return words + "s"


def _digits_to_words(digits: str) -> str:
    return " ".join(_ONES[int(d)] for d in digits)


def decimal_to_words(number: str) -> str:
    """Words for a decimal string: ``"3.14" -> "three point one four"``, ``"-0.5"``, ``".5"``.

    Thousands separators (``1,234.5``) are accepted. The integer part is read as a
    cardinal and the fraction digit by digit.
    """
    number = number.replace(",", "")
    sign = ""
    if number.startswith("-"):
        sign, number = "minus ", number[1:]
    whole, _, frac = number.partition(".")
    words = _integer_words(whole) if whole else ""
    if frac:
        words = (words + " point " if words else "point ") + _digits_to_words(frac)
    return sign + words


def _integer_words(digits: str) -> str:
    """Cardinal words for a digit string; a leading zero ("007") means read digit by digit."""
    if len(digits) > 1 and digits.startswith("0"):
        return _digits_to_words(digits)
    return number_to_words(int(digits))


# ---------------------------------------------------------------------------
# Language-neutral cleanup
# ---------------------------------------------------------------------------

_QUOTES = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"', "\u2039": "'", "\u203a": "'",
    "\u2026": "...",
    "\u2010": "-", "\u2011": "-", "\u2212": "-",  # hyphens and the minus sign
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2007": " ",  # unusual spaces
    "\u200b": "", "\ufeff": "",  # zero-width space, byte-order mark
})
_WHITESPACE = re.compile(r"\s+")
# A number range written with a dash: "1990–1999", "pages 10-20" (English reads it "to").
_NUMBER_RANGE = re.compile(r"(?<=\d)\s*[\u2013\u2014]\s*(?=\d)")
# Dashes used as a pause: em/en dash, horizontal bar, or a spaced ASCII "-" / "--".
# espeak-ng drops a bare "-" silently, so the pause would be lost; a comma keeps it.
_PAUSE_DASH = re.compile(r"\s*[\u2013\u2014\u2015]+\s*|\s+-{1,3}\s+|\s*-{2,3}\s*")


def _neutral_cleanup(text: str, range_word: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_QUOTES)
    text = _NUMBER_RANGE.sub(range_word, text)
    text = _PAUSE_DASH.sub(", ", text)
    # A pause dash at the start or before other punctuation leaves a stray comma.
    text = re.sub(r"^\s*,\s*", "", text)
    text = re.sub(r",\s*(?=[,.!?;:])", "", text)
    return text


def _collapse(text: str) -> str:
    text = _WHITESPACE.sub(" ", text).strip()
    # Words that the rules above glued to punctuation: "ten ,"-> "ten,".
    return re.sub(r" +([,.!?;:])", r"\1", text)


# ---------------------------------------------------------------------------
# English
# ---------------------------------------------------------------------------

# Titles that are always followed by a name: the period is never a sentence end.
_TITLES = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "prof": "professor",
}
# Titles that are also ordinary words or units ("gen.", "col.", "mt."): only
# expanded before a capitalised name.
_NAME_TITLES = {
    "capt": "captain", "gen": "general", "lt": "lieutenant", "sgt": "sergeant",
    "col": "colonel", "gov": "governor", "rev": "reverend", "hon": "honorable",
    "mt": "mount", "pres": "president", "sen": "senator", "rep": "representative",
}
# Abbreviations that can end a sentence: the period is kept when the abbreviation
# is the last word or the next word starts with a capital letter.
_TRAILING = {
    "etc": "et cetera", "jr": "junior", "sr": "senior", "inc": "incorporated",
    "ltd": "limited", "co": "company", "corp": "corporation", "ave": "avenue",
    "approx": "approximately", "dept": "department",
}
# "Ms." only capitalised: "5 ms." is milliseconds.
_TITLE_RE = re.compile(r"\b((?i:mr|mrs|dr|prof)|Ms|MS)\.(?=\s|$)")
_NAME_TITLE_RE = re.compile(r"\b(" + "|".join(_NAME_TITLES) + r")\.(?=\s+(?-i:[A-Z]))", re.IGNORECASE)
# British style writes "Mr Smith" without a period; only expand before a capitalised name.
_TITLE_NO_DOT_RE = re.compile(r"\b(Mr|Mrs|Ms|Dr)(?=\s+[A-Z])")
_TRAILING_RE = re.compile(r"\b(" + "|".join(_TRAILING) + r")\.", re.IGNORECASE)
_ST_RE = re.compile(r"\bSt\.")
_LATIN_RE = [
    (re.compile(r"\be\.\s?g\.(?=\W|$)", re.IGNORECASE), "for example"),
    (re.compile(r"\bi\.\s?e\.(?=\W|$)", re.IGNORECASE), "that is"),
    # Lower-case "v." only: an upper-case "V." is usually an initial.
    (re.compile(r"\b(?:vs|VS|Vs|v)\.(?=\s)"), "versus"),
    (re.compile(r"\bcf\.(?=\s)", re.IGNORECASE), "compare"),
    (re.compile(r"\bno\.(?=\s*\d)", re.IGNORECASE), "number"),
]


def _ends_sentence(rest: str) -> bool:
    """Whether a period followed by ``rest`` ends the sentence.

    It does at the end of the text and before a capitalised word, a quote or a
    bracket; it does not before a lower-case word, a digit or other punctuation.
    """
    rest = rest.lstrip()
    if not rest:
        return True
    first = rest[0]
    return first.isupper() or first in "\"'(["


def _expand_trailing(match: re.Match) -> str:
    word = _TRAILING[match.group(1).lower()]
    return word + "." if _ends_sentence(match.string[match.end():]) else word


def _expand_st(match: re.Match) -> str:
    rest = match.string[match.end():].lstrip()
    if rest[:1].isupper():
        return "Saint"  # "St. Louis"; "Baker St. The ..." is read wrongly, but rarely written.
    return "street." if not rest else "street"  # "Baker St. is", "on Baker St."


def _expand_abbreviations(text: str) -> str:
    text = _TITLE_RE.sub(lambda m: _TITLES[m.group(1).lower()], text)
    text = _NAME_TITLE_RE.sub(lambda m: _NAME_TITLES[m.group(1).lower()], text)
    text = _TITLE_NO_DOT_RE.sub(lambda m: _TITLES[m.group(1).lower()], text)
    for pattern, words in _LATIN_RE:
        text = pattern.sub(words, text)
    text = _ST_RE.sub(_expand_st, text)
    text = _TRAILING_RE.sub(_expand_trailing, text)
    return text


_NUM = r"\d[\d,]*(?:\.\d+)?|\.\d+"  # 1,234.56 | 3 | .5
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", "", ""),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
_CURRENCY_RE = re.compile(
    r"(?<![\w.])(-)?([$£€¥₹])\s?(" + _NUM + r")"
    r"(?:\s?(thousand|million|billion|trillion|k|m|bn)\b)?",
    re.IGNORECASE,
)
_CENTS_RE = re.compile(r"(?<![\w.])(\d+)\s?¢")
_TIME_RE = re.compile(
    r"(?<![\w:])([01]?\d|2[0-4]):([0-5]\d)(?::([0-5]\d))?(?![\d:])"
    r"(?:\s?([ap])\.?\s?m\b\.?)?",
    re.IGNORECASE,
)
_HOUR_AMPM_RE = re.compile(r"(?<![\w.:])(1[0-2]|0?[1-9])\s?([ap])\.?\s?m\b\.?", re.IGNORECASE)
_PERCENT_RE = re.compile(r"(?<![\w.])(-?(?:" + _NUM + r"))\s?%")
_DEGREE_RE = re.compile(r"(?<![\w.])(-?(?:" + _NUM + r"))\s?°\s?([CF](?![a-zA-Z]))?")
_ORDINAL_RE = re.compile(r"(?<![\w.])(\d[\d,]*)(st|nd|rd|th)\b", re.IGNORECASE)
_DECADE_RE = re.compile(r"(?<![\w.])(?:(\d{2})|')?(\d)0s\b")
_HASH_NUMBER_RE = re.compile(r"#\s?(?=\d)")
# A plain number. A minus sign counts only where it cannot be a hyphen ("5-3", "COVID-19").
_NUMBER_RE = re.compile(r"(?<![\w.])(-)?(?:(\d{1,3}(?:,\d{3})+(?!\d)|\d+)(\.\d+)?|(\.\d+))")
_SCALE_WORDS = {"k": "thousand", "m": "million", "bn": "billion"}
_SYMBOLS = [
    (re.compile(r"\s*&\s*"), " and "),
    (re.compile(r"\s*\+\s*"), " plus "),
    (re.compile(r"\s*=\s*"), " equals "),
    (re.compile(r"\s*@\s*"), " at "),
    (re.compile(r"\s*%"), " percent"),
    (re.compile(r"\s*°"), " degrees"),
]


def _is_one(number: str) -> bool:
    try:
        return float(number.replace(",", "")) == 1.0
    except ValueError:
        return False


def _expand_currency(match: re.Match) -> str:
    minus, symbol, amount, scale = match.groups()
    one, many, sub_one, sub_many = _CURRENCIES[symbol]
    sign = "minus " if minus else ""
    if scale:  # "$2.5 million" -> "two point five million dollars"
        scale_word = _SCALE_WORDS.get(scale.lower(), scale.lower())
        return f"{sign}{decimal_to_words(amount)} {scale_word} {many}"
    whole, _, frac = amount.replace(",", "").partition(".")
    whole = whole or "0"
    if frac and len(frac) == 2 and sub_many:
        cents = int(frac)
        parts = []
        if int(whole) or not cents:
            parts.append(f"{_integer_words(whole)} {one if int(whole) == 1 else many}")
        if cents:
            parts.append(f"{number_to_words(cents)} {sub_one if cents == 1 else sub_many}")
        return sign + " and ".join(parts)
    unit = one if _is_one(amount) else many
    return f"{sign}{decimal_to_words(amount)} {unit}"


def _ampm(match: re.Match, letter: str | None) -> str:
    """" AM" / " PM" for a matched "am", "a.m." or "pm"; keeps a final period that ends the sentence."""
    if not letter:
        return ""
    words = f" {letter.upper()}M"
    if match.group(0).endswith(".") and _ends_sentence(match.string[match.end():]):
        words += "."
    return words


def _expand_time(match: re.Match) -> str:
    hours, minutes, seconds, ampm = match.groups()
    h, m = int(hours), int(minutes)
    if m == 0:
        # "10:00" -> "ten o'clock", but "10:00 pm" -> "ten PM".
        words = number_to_words(h) + ("" if ampm else " o'clock")
    elif m < 10:
        words = f"{number_to_words(h)} oh {_ONES[m]}"
    else:
        words = f"{number_to_words(h)} {number_to_words(m)}"
    if seconds is not None:
        s = int(seconds)
        words += f" and {number_to_words(s)} second{'' if s == 1 else 's'}"
    return words + _ampm(match, ampm)


def _expand_degrees(match: re.Match) -> str:
    number, scale = match.groups()
    unit = "degree" if _is_one(number) else "degrees"
    scale_word = {"C": " Celsius", "F": " Fahrenheit"}.get(scale or "", "")
    return f"{decimal_to_words(number)} {unit}{scale_word}"


def _expand_decade(match: re.Match) -> str:
    century, decade = match.group(1), int(match.group(2))
    if century is None:  # "80s", "'80s"
        return _plural(_TENS[decade]) if decade >= 2 else ("tens" if decade == 1 else "zeros")
    return _plural(year_to_words(int(century + str(decade) + "0")))


def _expand_number(match: re.Match) -> str:
    minus, whole, frac, bare_frac = match.groups()
    if whole is None:  # ".5"
        whole, frac = "", bare_frac
    if minus is None and frac is None and len(whole) == 4:
        value = int(whole)
        if 1100 <= value <= 2099:
            return year_to_words(value)
    words = decimal_to_words((minus or "") + whole + (frac or ""))
    # Keep a number apart from letters glued to it: "3D" -> "three D".
    end = match.end()
    if end < len(match.string) and match.string[end].isalpha():
        words += " "
    return words


def _normalize_english(text: str) -> str:
    text = _expand_abbreviations(text)
    text = _CURRENCY_RE.sub(_expand_currency, text)
    text = _CENTS_RE.sub(lambda m: f"{m.group(1)} {'cent' if m.group(1) == '1' else 'cents'}", text)
    text = _TIME_RE.sub(_expand_time, text)
    text = _HOUR_AMPM_RE.sub(lambda m: number_to_words(int(m.group(1))) + _ampm(m, m.group(2)), text)
    text = _PERCENT_RE.sub(lambda m: f"{decimal_to_words(m.group(1))} percent", text)
    text = _DEGREE_RE.sub(_expand_degrees, text)
    text = _ORDINAL_RE.sub(lambda m: ordinal_to_words(int(m.group(1).replace(",", ""))), text)
    text = _DECADE_RE.sub(_expand_decade, text)
    text = _HASH_NUMBER_RE.sub("number ", text)
    text = _NUMBER_RE.sub(_expand_number, text)
    for pattern, words in _SYMBOLS:
        text = pattern.sub(words, text)
    return text


def _is_english(language: str) -> bool:
    return language.lower().replace("_", "-").split("-")[0] == "en"


def normalize_text(text: str, language: str = "en-us") -> str:
    """Return ``text`` rewritten as the words a reader would say.

    Args:
        text: raw input text.
        language: espeak-ng language code. English codes (``en``, ``en-us``,
            ``en-gb``, ...) get the full English rules listed in the module
            docstring; every other language gets only the language-neutral cleanup
            (NFC, ASCII quotes, ``…`` -> ``...``, pause dashes -> commas, whitespace).

    Returns:
        The normalised text on one line, with single spaces. It may be empty when
        the input held only whitespace.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    english = _is_english(language)
    text = _neutral_cleanup(text, " to " if english else "-")
    if english:
        text = _normalize_english(text)
    return _collapse(text)
