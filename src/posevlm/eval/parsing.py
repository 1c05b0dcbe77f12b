"""Answer parsing for VSI-Bench, three named modes, and per-record scoring under each mode.

Modes (registered in ``answer_parsers``; spec eval.md §3):

* ``official`` (default, all headline numbers): lmms-eval's rule exactly —
  ``pred.split(' ')[0].rstrip('.').strip()``; MCA compared case-insensitively with the raw
  ground-truth letter, NA through ``float()`` and official MRA.
* ``lenient`` (diagnostic, reported separately, never mixed): last ``<answer>`` block, reasoning
  blocks dropped, any Unicode whitespace; MCA letters with brackets/punctuation, "answer is B",
  or the option text; NA: first number anywhere (thousands commas, signs, exponents), number words
  zero–twenty, units ignored (flagged ``unit_mismatch`` when they disagree with the question).
* ``legacy``: the researcher's fork (``clean_text``, leading letter a–d, comma removal, whole-string
  ``float()``) scored with ``mra_legacy``. For comparing with old runs only.

Parse status (``PARSE_STATUSES``): ``ok``; ``empty`` — the text the mode looks at is empty (for
``official`` this includes outputs starting with a space, whose first token is ""); ``no_number``
/ ``no_letter`` — nothing usable (the "unparseable" cases); ``out_of_range_letter`` — a letter
beyond the record's options; ``multiple_candidates`` — a hedged MC answer ("B, C", "B or C",
lenient only). Non-``ok`` answers score 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence, get_args

from posevlm.errors import ConfigError
from posevlm.eval.metrics import Kind, accuracy, ground_truth_is_valid, metrics, question_kind
from posevlm.registry import Registry

__all__ = ["PARSE_STATUSES", "DEFAULT_MODES", "ParsedAnswer", "AnswerParser", "answer_parsers", "parse_answer",
           "score_record", "score_records"]

ParseStatus = Literal["ok", "empty", "no_number", "no_letter", "out_of_range_letter", "multiple_candidates"]
PARSE_STATUSES: tuple[str, ...] = get_args(ParseStatus)
DEFAULT_MODES: tuple[str, ...] = ("official", "lenient", "legacy")


@dataclass(frozen=True)
class ParsedAnswer:
    """One model output read under one mode.

    Attributes:
        value: upper-case option letter (MCA) or float (NA); ``None`` when nothing usable was found.
        status: one of ``PARSE_STATUSES``.
        mode: the parser that produced it.
        text: the string the mode compares for MCA (official: the first token) or converts for NA.
        flags: diagnostics that do not change the score (``non_finite``, ``unit_mismatch``,
            ``multiple_numbers``, ``leading_space``, ``option_text_mismatch``).
    """

    value: str | float | None
    status: ParseStatus
    mode: str
    text: str
    flags: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class AnswerParser:
    """A parsing mode: how to read outputs and ground truths, and which NA metric scores them.

    ``mca_compares_text``: MCA score compares ``ParsedAnswer.text`` with the raw ground truth (the
    official rule) instead of the parsed letter ``value``.
    """

    name: str
    parse: Callable[..., ParsedAnswer]
    parse_ground_truth: Callable[[str, Kind], str | float | None]
    na_metric: str
    description: str
    mca_compares_text: bool = False


answer_parsers: Registry[AnswerParser] = Registry("answer parser")


def _letter_answer(mode: str, text: str, letter: str | None, n_options: int | None, flags=()) -> ParsedAnswer:
    if not text:
        return ParsedAnswer(None, "empty", mode, text, tuple(flags))
    if letter is None:
        return ParsedAnswer(None, "no_letter", mode, text, tuple(flags))
    letter = letter.upper()
    if n_options is not None and ord(letter) - ord("A") >= n_options:
        return ParsedAnswer(letter, "out_of_range_letter", mode, text, tuple(flags))
    return ParsedAnswer(letter, "ok", mode, text, tuple(flags))


def _number_answer(mode: str, text: str, value: float | None, flags=()) -> ParsedAnswer:
    if not text:
        return ParsedAnswer(None, "empty", mode, text, tuple(flags))
    if value is None:
        return ParsedAnswer(None, "no_number", mode, text, tuple(flags))
    if value != value or value in (float("inf"), float("-inf")):
        flags = (*flags, "non_finite")
    return ParsedAnswer(value, "ok", mode, text, tuple(flags))


def _to_float(text: str) -> float | None:
    """lmms-eval ``to_float``: ``float(x)`` or ``None``."""
    try:
        return float(text)
    except (TypeError, ValueError, OverflowError):
        return None


_SINGLE_LETTER = re.compile(r"[A-Za-z]")


# ------------------------------------------------------------------------------------------ official
def parse_official(raw_output: str, *, kind: Kind, options: Sequence[str] | None = None,
                   question_type: str | None = None) -> ParsedAnswer:
    """lmms-eval ``fuzzy_matching``: first piece of ``split(' ')``, trailing periods dropped, stripped."""
    token = raw_output.split(" ")[0].rstrip(".").strip()
    flags = ("leading_space",) if raw_output.startswith(" ") and raw_output.strip() else ()
    if kind == "MCA":
        letter = token if _SINGLE_LETTER.fullmatch(token) else None
        return _letter_answer("official", token, letter, len(options) if options else None, flags)
    return _number_answer("official", token, _to_float(token), flags)


def _official_ground_truth(ground_truth: str, kind: Kind) -> str | float | None:
    return ground_truth if kind == "MCA" else _to_float(ground_truth)


# -------------------------------------------------------------------------------------------- legacy
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_LEGACY_LETTER = re.compile(r"^([a-d])(?:[\.\)\s:,]|$)")


def _legacy_clean(text: str) -> str:
    """Fork ``clean_text``: last <answer> block, newlines -> spaces, collapse, strip, rstrip('.'), lower."""
    blocks = _ANSWER_TAG.findall(text)
    cleaned = blocks[-1] if blocks else text
    cleaned = re.sub(r"\s+", " ", cleaned.replace("\n", " ").replace("\r", " "))
    return cleaned.strip().rstrip(".").lower()


def _legacy_letter(cleaned: str) -> str | None:
    m = _LEGACY_LETTER.match(cleaned.strip())
    return m.group(1) if m else None


def _legacy_number(cleaned: str) -> float | None:
    return _to_float(cleaned.replace(",", ""))


def parse_legacy(raw_output: str, *, kind: Kind, options: Sequence[str] | None = None,
                 question_type: str | None = None) -> ParsedAnswer:
    """The fork's rules (spec §3.2): ``clean_text`` then leading letter a–d, or whole-string float."""
    cleaned = _legacy_clean(raw_output)
    if kind == "MCA":
        letter = _legacy_letter(cleaned)
        return _letter_answer("legacy", letter or cleaned, letter, len(options) if options else None)
    return _number_answer("legacy", cleaned, _legacy_number(cleaned))


def _legacy_ground_truth(ground_truth: str, kind: Kind) -> str | float | None:
    cleaned = _legacy_clean(ground_truth)
    return (_legacy_letter(cleaned) or cleaned) if kind == "MCA" else _legacy_number(cleaned)


# ------------------------------------------------------------------------------------------- lenient
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_ANSWER_TAG_I = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_LEAD_LETTER = re.compile(r"^[(\[]?([A-Za-z])(?:([)\]])|(?=[.:,;]|\s|$))\s*([.:,;])?\s*(.*)$", re.DOTALL)
_ONE_LETTER = r"[(\[]?[A-Za-z](?![A-Za-z])[)\]]?"
_JOIN = r"(?:or|and|&|/|,|;)"
_ONLY_LETTERS = re.compile(rf"^(?:{_JOIN}\s*)?{_ONE_LETTER}(?:\s*{_JOIN}?\s*{_ONE_LETTER})*\s*\.?$",
                           re.IGNORECASE)
_PHRASE_LETTER = re.compile(
    r"\b(?:answer|option|choice)\b\s*(?:is|:|=|-)?\s*(?:option\s+)?[(\[]?([A-Za-z])[)\]]?(?=$|[^A-Za-z0-9])",
    re.IGNORECASE,
)
_OPTION = re.compile(r"^\s*([A-Za-z])\s*[.)]\s*(.*?)\s*$", re.DOTALL)
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen twenty").split()
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_WORDS) + r")\b", re.IGNORECASE)
_UNIT = re.compile(
    r"^\s*(square\s+met(?:er|re)s?|sq\.?\s*m|sqm|m²|m\^2|m2|centimet(?:er|re)s?|cm|millimet(?:er|re)s?|mm|"
    r"met(?:er|re)s?|m|feet|foot|ft|inch(?:es)?)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_UNIT_CLASS = {"sq": "m2", "m²": "m2", "m^": "m2", "m2": "m2", "ce": "cm", "cm": "cm", "mi": "mm", "mm": "mm",
               "me": "m", "m": "m", "fe": "ft", "fo": "ft", "ft": "ft", "in": "in"}
_EXPECTED_UNIT = {"object_abs_distance": "m", "object_size_estimation": "cm", "room_size_estimation": "m2"}


def _lenient_text(raw_output: str) -> str:
    """Last <answer> block if any, else the text outside <think> blocks; whitespace normalised."""
    blocks = _ANSWER_TAG_I.findall(raw_output)
    if blocks:
        text = blocks[-1]
    else:
        text = _THINK_BLOCK.sub(" ", raw_output)
        low = text.lower()
        if "</think>" in low:  # opening tag in the prompt: keep what follows the last closing tag
            text = text[low.rindex("</think>") + len("</think>"):]
        elif "<think>" in low:  # unterminated reasoning: no answer was given
            text = text[: low.index("<think>")]
        low = text.lower()
        if "<answer>" in low:  # unterminated answer block
            text = text[low.rindex("<answer>") + len("<answer>"):]
    return " ".join(text.split())


def _norm_option_text(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s-]", " ", text.lower()).split())


def _option_texts(options: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for i, opt in enumerate(options or ()):
        m = _OPTION.match(opt)
        out[(m.group(1) if m else chr(ord("A") + i)).upper()] = _norm_option_text(m.group(2) if m else opt)
    return out


def _lenient_letter(text: str, options: Sequence[str] | None) -> tuple[str | None, str, tuple[str, ...]]:
    """(letter or None, status, flags). Order: option text, explicit leading letter, "answer is X",
    then a bare leading capital followed by prose ("B table"; "A table" reads as an article when
    the rest is another option's text)."""
    opt_texts = _option_texts(options)
    normalised = _norm_option_text(text)
    for letter, opt in opt_texts.items():  # 1. the whole answer is an option's text
        if opt and normalised in (opt, _norm_option_text(f"{letter} {opt}")):
            return letter, "ok", ()
    weak = None
    m = _LEAD_LETTER.match(text)  # 2. "B", "(B)", "B)", "B: table", "b.", "B, C"
    if m:
        letter, explicit, rest = m.group(1), bool(m.group(2) or m.group(3)), m.group(4).strip()
        rest_norm = _norm_option_text(rest)
        if not rest_norm:
            return letter, "ok", ()
        if _ONLY_LETTERS.fullmatch(rest):
            others = {c.upper() for c in re.findall(r"(?<![A-Za-z])[A-Za-z](?![A-Za-z])", rest)}
            return (letter, "ok", ()) if others <= {letter.upper()} else (None, "multiple_candidates", ())
        named = next((k for k, v in opt_texts.items() if v and rest_norm == v), None)
        mismatch = ("option_text_mismatch",) if named and named != letter.upper() else ()
        if explicit:
            return letter, "ok", mismatch
        if named and (named == letter.upper() or letter.lower() == "a"):
            return named, "ok", ()  # "B table" with B = table; "A table": article before option B's text
        if letter.isupper():
            weak = (letter, mismatch)
    found = [(mm.group(1), mm.end(1)) for mm in _PHRASE_LETTER.finditer(text)]  # 3. "the answer is B"
    found = [c for c, end in found if c.isupper() or end >= len(text) or not text[end].isspace()]
    if found:
        return found[-1], "ok", ()
    if weak:  # 4. a capital letter then prose, no better evidence
        return weak[0], "ok", weak[1]
    return None, "no_letter", ()


def parse_lenient(raw_output: str, *, kind: Kind, options: Sequence[str] | None = None,
                  question_type: str | None = None) -> ParsedAnswer:
    """Diagnostic parser for verbose / reasoning outputs (spec §3.4)."""
    text = _lenient_text(raw_output)
    if kind == "MCA":
        if not text:
            return _letter_answer("lenient", text, None, None)
        letter, status, flags = _lenient_letter(text, options)
        if status == "multiple_candidates":
            return ParsedAnswer(None, status, "lenient", text)
        return _letter_answer("lenient", text, letter, len(options) if options else None, flags)
    numeric = _THOUSANDS.sub("", text)
    matches = list(_NUMBER.finditer(numeric))
    flags: list[str] = []
    if matches:
        value = _to_float(matches[0].group(0))
        if len({float(m.group(0)) for m in matches}) > 1:
            flags.append("multiple_numbers")
        unit = _UNIT.match(numeric[matches[0].end():])
        expected = _EXPECTED_UNIT.get(question_type or "")
        if unit and expected:
            token = unit.group(1).lower()
            cls = _UNIT_CLASS.get(token[:2], _UNIT_CLASS.get(token))
            if cls != expected:
                flags.append("unit_mismatch")
    else:
        word = _NUMBER_WORD.search(text)
        value = float(_WORDS.index(word.group(1).lower())) if word else None
    return _number_answer("lenient", text, value, flags)


def _lenient_ground_truth(ground_truth: str, kind: Kind) -> str | float | None:
    return ground_truth.strip() if kind == "MCA" else _to_float(ground_truth)


for _parser in (
    AnswerParser("official", parse_official, _official_ground_truth, "mra",
                 "lmms-eval rule: first space-separated token, trailing '.' dropped; float() for numbers",
                 mca_compares_text=True),
    AnswerParser("lenient", parse_lenient, _lenient_ground_truth, "mra",
                 "diagnostic: <answer> tags, bracketed letters, 'answer is X', option text, first number, "
                 "units"),
    AnswerParser("legacy", parse_legacy, _legacy_ground_truth, "mra_legacy",
                 "researcher's fork: clean_text, leading letter a-d, commas removed, float32 strict MRA"),
):
    answer_parsers.register(_parser.name)(_parser)
del _parser


def parse_answer(raw_output: str, *, kind: Kind, mode: str = "official", options: Sequence[str] | None = None,
                 question_type: str | None = None) -> ParsedAnswer:
    """Parse one model output under one mode (see the module docstring for the rules)."""
    if not isinstance(raw_output, str):
        raise ConfigError(f"raw_output must be a str; got {type(raw_output).__name__}", field="raw_output",
                          value=raw_output)
    return answer_parsers.get(mode).parse(raw_output, kind=kind, options=options, question_type=question_type)


# ------------------------------------------------------------------------------------------- scoring
_REQUIRED = ("question_type", "ground_truth")


def _check_record(record: Mapping[str, Any], raw_output: Any) -> Kind:
    if not isinstance(record, Mapping):
        raise ConfigError(f"record must be a mapping (HF VSI-Bench row); got {type(record).__name__}",
                          field="record", value=record)
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise ConfigError(f"record {record.get('id')!r} lacks {missing}; VSI-Bench rows carry id, dataset, "
                          "scene_name, question_type, question, options, ground_truth",
                          field=missing[0], value=record)
    if not isinstance(raw_output, str):
        raise ConfigError(f"raw_output for record {record.get('id')!r} must be a str; got "
                          f"{type(raw_output).__name__}. Record generation errors separately.",
                          field="raw_output", value=raw_output)
    return question_kind(record["question_type"])


def _prepare(record: Mapping[str, Any], raw_output: Any, parsers: Sequence[AnswerParser]):
    """Validate, parse under each mode; returns the output dict (scores still 0) and per-mode work items."""
    kind = _check_record(record, raw_output)
    q, options, gt_raw = record["question_type"], record.get("options"), str(record["ground_truth"])
    out_modes: dict[str, dict[str, Any]] = {}
    items = []
    record_flags: list[str] = []
    for parser in parsers:
        parsed = parser.parse(raw_output, kind=kind, options=options, question_type=q)
        gt = parser.parse_ground_truth(gt_raw, kind)
        invalid = kind == "NA" and not ground_truth_is_valid(gt)  # type: ignore[arg-type]
        if invalid and "invalid_ground_truth" not in record_flags:
            record_flags.append("invalid_ground_truth")
        entry = {"answer": parsed.value, "text": parsed.text, "status": parsed.status, "score": 0.0,
                 "hits": None, "flags": list(parsed.flags)}
        if kind == "MCA":  # official compares its raw first token, exactly as lmms-eval does
            compared = parsed.text if parser.mca_compares_text else parsed.value
            entry["score"] = accuracy(compared, str(gt))  # type: ignore[arg-type]
        out_modes[parser.name] = entry
        items.append((parser, parsed, gt, entry))
    scored = {"id": record.get("id"), "dataset": record.get("dataset"), "scene_name": record.get("scene_name"),
              "question_type": q, "kind": kind, "ground_truth": record["ground_truth"],
              "raw_output": raw_output, "flags": record_flags, "modes": out_modes}
    return scored, kind, items


def score_record(record: Mapping[str, Any], raw_output: str, *,
                 modes: Sequence[str] = DEFAULT_MODES) -> dict[str, Any]:
    """Parse and score one model output under each mode.

    Args:
        record: HF VSI-Bench row (§5.1): ``question_type`` and ``ground_truth`` required; ``id``,
            ``dataset``, ``scene_name`` copied through; ``options`` used for letter range/text.
        raw_output: the decoded model output, unmodified.
        modes: parser names from ``answer_parsers``.
    Returns:
        ``{"id", "dataset", "scene_name", "question_type", "kind", "ground_truth", "raw_output",
        "flags", "modes": {mode: {"answer", "text", "status", "score", "hits", "flags"}}}`` where
        ``answer`` is the parsed letter/number (None if unusable), ``text`` what the mode read,
        ``score`` the per-sample metric (accuracy, or the mode's MRA), ``hits`` the MRA thresholds
        passed (NA only, else None), and top-level ``flags`` holds record problems
        (``invalid_ground_truth``).
    Raises:
        ConfigError: not a VSI-Bench row, unknown question type or mode, raw_output not a str.
    """
    scored, kind, items = _prepare(record, raw_output, [answer_parsers.get(m) for m in modes])
    if kind == "NA":
        for parser, parsed, gt, entry in items:
            entry["score"] = metrics.get(parser.na_metric).fn(parsed.value, gt)
            entry["hits"] = round(entry["score"] * 10)  # scores are k/10 (float32-rounded for legacy)
    return scored


def score_records(records: Sequence[Mapping[str, Any]], raw_outputs: Sequence[str], *,
                  modes: Sequence[str] = DEFAULT_MODES) -> list[dict[str, Any]]:
    """``score_record`` over many records, NA scores from one vectorised MRA call per mode.

    Returns the same list as ``[score_record(r, o, modes=modes) for r, o in zip(records, raw_outputs)]``.
    """
    if len(records) != len(raw_outputs):
        raise ConfigError(f"records and raw_outputs differ in length: {len(records)} vs {len(raw_outputs)}",
                          field="raw_outputs", value=len(raw_outputs))
    parsers = [answer_parsers.get(m) for m in modes]
    pending: dict[str, list] = {p.name: [] for p in parsers}
    out = []
    for record, raw in zip(records, raw_outputs):
        scored, kind, items = _prepare(record, raw, parsers)
        out.append(scored)
        if kind == "NA":
            for parser, parsed, gt, entry in items:
                pending[parser.name].append((parsed.value, gt, entry))
    for parser in parsers:
        work = pending[parser.name]
        if not work:
            continue
        predictions, targets, entries = (list(column) for column in zip(*work))
        spec = metrics.get(parser.na_metric)
        hits, values = spec.fn_hits(predictions, targets), spec.fn_array(predictions, targets)
        for entry, h, v in zip(entries, hits.tolist(), values.tolist()):
            entry["hits"], entry["score"] = h, v
    return out
