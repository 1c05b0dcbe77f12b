"""Open-ended answer scoring for ScanQA and SQA3D (spec eval.md §7).

* Exact match, always available (pure Python): raw EM (string equality with any reference, the
  fork's rule), normalised EM (both sides: lower-case, punctuation -> space except decimal points,
  articles a/an/the dropped, whitespace collapsed, optional number words zero–twenty -> digits),
  and refined EM (normalised EM, or one side contained in the other once spaces are removed — the
  LEO-style "EM-R" common in SQA3D papers; an empty prediction never matches).
* SQA3D: EM overall and per question prefix (what / is / how / can / which / others, by the
  question's leading characters, case-insensitive — the rule of the common SQA3D evaluators).
* Caption metrics BLEU-1…4, METEOR, ROUGE-L, CIDEr via the optional ``pycocoevalcap`` package
  (extra ``posevlm[eval-text]``), imported only when asked for. PTB tokenisation (Stanford
  CoreNLP, needs Java) when available, else a documented regex tokeniser, and the result says
  which. METEOR needs Java: without a working ``java`` its value is None with the reason; it
  never raises. CIDEr's IDF comes from the scored reference set, so only complete sets are
  scored (prediction ids must equal reference ids) and ``n`` is reported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

from posevlm.errors import ConfigError, PosevlmError

__all__ = [
    "CAPTION_METRICS",
    "SQA3D_PREFIXES",
    "OptionalDependencyError",
    "MetricValue",
    "CaptionScores",
    "normalize_answer",
    "text_exact_match",
    "refined_exact_match",
    "exact_match_scores",
    "sqa3d_question_prefix",
    "sqa3d_scores",
    "java_status",
    "simple_tokenize",
    "caption_scores",
    "scanqa_scores",
]

CAPTION_METRICS: tuple[str, ...] = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
SQA3D_PREFIXES: tuple[str, ...] = ("what", "is", "how", "can", "which", "others")
_EXTRA_HINT = "pip install 'posevlm[eval-text]' (or: pip install pycocoevalcap)"
_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
          "sixteen seventeen eighteen nineteen twenty").split()
_PTB_PUNCTUATION = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-",
                    "--", "...", ";"}


class OptionalDependencyError(PosevlmError, ImportError):
    """An optional extra is not installed. ``extra`` names it; the message gives the install command."""

    def __init__(self, message: str, *, extra: str):
        super().__init__(message)
        self.extra = extra


@dataclass(frozen=True)
class MetricValue:
    """A metric value, or None with the reason it could not be computed."""

    value: float | None
    reason: str | None = None


# ------------------------------------------------------------------------------------- exact match
def normalize_answer(text: str, *, number_words: bool = False) -> str:
    """Lower-case, punctuation -> space (decimal points between digits kept), drop a/an/the,
    optionally map number words zero–twenty to digits, collapse whitespace."""
    text = re.sub(r"(?<=\d)\.(?=\d)", "\0", text.lower())
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text).replace("\0", ".")
    tokens = [t for t in text.split() if t not in ("a", "an", "the")]
    if number_words:
        tokens = [str(_WORDS.index(t)) if t in _WORDS else t for t in tokens]
    return " ".join(tokens)


def text_exact_match(prediction: str, references: Sequence[str], *, normalize: bool = True) -> float:
    """1.0 if the prediction equals any reference (after ``normalize_answer`` when ``normalize``)."""
    if normalize:
        p = normalize_answer(prediction)
        return 1.0 if any(p == normalize_answer(r) for r in references) else 0.0
    return 1.0 if prediction in references else 0.0


def refined_exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 on normalised EM, or when one non-empty side contains the other with spaces removed (LEO-style
    EM-R). Unlike a bare ``in`` test, an empty prediction does not match every reference."""
    p = normalize_answer(prediction)
    p_compact = p.replace(" ", "")
    for r in references:
        r_norm = normalize_answer(r)
        r_compact = r_norm.replace(" ", "")
        if p == r_norm or (p_compact and r_compact and (p_compact in r_compact or r_compact in p_compact)):
            return 1.0
    return 0.0


def _check_pairs(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(predictions) != len(references):
        raise ConfigError(f"predictions and references differ in length: {len(predictions)} vs "
                          f"{len(references)}", field="references", value=len(references))
    empty = [i for i, r in enumerate(references) if not r or isinstance(r, str)]
    if empty:
        raise ConfigError(f"every item needs a non-empty list of reference strings; bad items at {empty[:5]}",
                          field="references", value=empty[:5])


def exact_match_scores(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Mean raw / normalised / refined EM over items: ``{"n", "em_raw", "em_normalized", "em_refined"}``."""
    _check_pairs(predictions, references)
    n = len(predictions)
    if n == 0:
        return {"n": 0, "em_raw": None, "em_normalized": None, "em_refined": None}
    raw = sum(text_exact_match(p, r, normalize=False) for p, r in zip(predictions, references))
    norm = sum(text_exact_match(p, r) for p, r in zip(predictions, references))
    refined = sum(refined_exact_match(p, r) for p, r in zip(predictions, references))
    return {"n": n, "em_raw": raw / n, "em_normalized": norm / n, "em_refined": refined / n}


def sqa3d_question_prefix(question: str) -> str:
    """SQA3D question group: the first of what/is/how/can/which the question starts with, else others."""
    q = question.lstrip().lower()
    return next((p for p in SQA3D_PREFIXES[:-1] if q.startswith(p)), "others")


def sqa3d_scores(predictions: Sequence[str], references: Sequence[Sequence[str]],
                 questions: Sequence[str]) -> dict[str, Any]:
    """EM scores overall and per question prefix: ``{"overall": {...}, "per_prefix": {prefix: {...}}}``."""
    _check_pairs(predictions, references)
    if len(questions) != len(predictions):
        raise ConfigError(f"questions and predictions differ in length: {len(questions)} vs {len(predictions)}",
                          field="questions", value=len(questions))
    prefixes = [sqa3d_question_prefix(q) for q in questions]
    per_prefix = {}
    for prefix in SQA3D_PREFIXES:
        idx = [i for i, p in enumerate(prefixes) if p == prefix]
        per_prefix[prefix] = exact_match_scores([predictions[i] for i in idx], [references[i] for i in idx])
    return {"overall": exact_match_scores(predictions, references), "per_prefix": per_prefix}


# -------------------------------------------------------------------------------------------- java
def java_status(timeout_s: float = 30.0) -> tuple[bool, str]:
    """(True, version line) if ``java -version`` runs, else (False, reason). Looks ``java`` up on PATH."""
    java = shutil.which("java")
    if java is None:
        return False, "java not found on PATH (METEOR and the PTB tokenizer need a Java runtime)"
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError) as e:
        return False, f"`{java} -version` failed: {type(e).__name__}: {e}"
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip()[:200]
        return False, f"`{java} -version` exited with {proc.returncode}: {message}"
    return True, ((proc.stderr or proc.stdout).strip().splitlines() or ["java"])[0]


# ---------------------------------------------------------------------------------- caption metrics
def _check_ids(predictions: Mapping[Any, str], references: Mapping[Any, Sequence[str]]) -> None:
    missing = sorted(set(references) - set(predictions), key=str)
    extra = sorted(set(predictions) - set(references), key=str)
    if missing or extra:
        raise ConfigError(f"score only complete sets: {len(missing)} ids without a prediction (e.g. "
                          f"{missing[:3]}), {len(extra)} predictions without references (e.g. {extra[:3]})",
                          field="predictions", value={"missing": missing[:10], "extra": extra[:10]})
    _check_pairs(list(predictions.values()), [references[k] for k in predictions])


@dataclass(frozen=True)
class CaptionScores:
    """Caption metrics of one complete prediction set.

    Attributes:
        values: metric name (``CAPTION_METRICS``) -> MetricValue (value None + reason if unavailable).
        n: number of scored items.
        tokenizer: ``"ptb"`` or ``"simple"``; ``tokenizer_reason`` says why PTB was not used.
    """

    values: dict[str, MetricValue]
    n: int
    tokenizer: str
    tokenizer_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "tokenizer": self.tokenizer, "tokenizer_reason": self.tokenizer_reason,
                "values": {k: v.value for k, v in self.values.items()},
                "unavailable": {k: v.reason for k, v in self.values.items() if v.value is None}}


def _import_coco(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"pycocoevalcap.{module}")
    except ImportError as e:
        raise OptionalDependencyError(
            f"caption metrics need the optional package pycocoevalcap ({e}). {_EXTRA_HINT}", extra="eval-text"
        ) from e


def simple_tokenize(text: str) -> str:
    """Java-free stand-in for PTB tokenisation: lower-case, split words and punctuation, drop the
    punctuation tokens pycocoevalcap drops after PTB. Not identical to PTB (contractions, brackets)."""
    tokens = re.findall(r"\w+(?:[-']\w+)*|[^\w\s]+", text.lower())
    return " ".join(t for t in tokens if t not in _PTB_PUNCTUATION and not re.fullmatch(r"[^\w\s]+", t))


def _tokenize(items: Mapping[Any, Sequence[str]], tokenizer: str) -> dict[Any, list[str]]:
    if tokenizer == "simple":
        return {k: [simple_tokenize(s) for s in v] for k, v in items.items()}
    ptb = _import_coco("tokenizer.ptbtokenizer").PTBTokenizer()
    keys = list(items)
    captions = {i: [{"caption": s.replace("\n", " ")} for s in items[k]] for i, k in enumerate(keys)}
    tokenized = ptb.tokenize(captions)
    return {k: tokenized[i] for i, k in enumerate(keys)}


def _meteor(gts: dict, res: dict) -> MetricValue:
    ok, reason = java_status()
    if not ok:
        return MetricValue(None, f"METEOR unavailable: {reason}")
    meteor_mod = _import_coco("meteor.meteor")
    scorer = None
    try:
        scorer = meteor_mod.Meteor()
        score, _ = scorer.compute_score(gts, res)
        return MetricValue(float(score))
    except Exception as e:  # noqa: BLE001 - any Java/subprocess failure degrades to "unavailable"
        return MetricValue(None, f"METEOR unavailable: the METEOR jar failed ({type(e).__name__}: {e})")
    finally:
        if scorer is not None:  # pycocoevalcap's __del__ blocks forever if compute_score died holding the lock
            if scorer.lock.locked():
                scorer.lock.release()
            scorer.meteor_p.kill()


def caption_scores(predictions: Mapping[Any, str], references: Mapping[Any, Sequence[str]], *,
                   tokenizer: Literal["auto", "ptb", "simple"] = "auto",
                   metrics: Sequence[str] = CAPTION_METRICS) -> CaptionScores:
    """BLEU-1…4 / METEOR / ROUGE-L / CIDEr of a complete prediction set through pycocoevalcap.

    Args:
        predictions: item id -> predicted answer.
        references: item id -> reference answers (same ids as ``predictions``).
        tokenizer: ``"ptb"`` (needs Java), ``"simple"``, or ``"auto"`` (PTB if Java works).
        metrics: subset of ``CAPTION_METRICS``.
    Raises:
        OptionalDependencyError: pycocoevalcap missing. ConfigError: ids differ, unknown metric or
        tokenizer, or ``tokenizer="ptb"`` without Java.
    """
    unknown = [m for m in metrics if m not in CAPTION_METRICS]
    if unknown or tokenizer not in ("auto", "ptb", "simple"):
        raise ConfigError(f"unknown metrics {unknown} or tokenizer {tokenizer!r}; metrics: "
                          f"{', '.join(CAPTION_METRICS)}; tokenizer: auto, ptb, simple",
                          field="metrics" if unknown else "tokenizer", value=unknown or tokenizer)
    _check_ids(predictions, references)
    bleu_mod, rouge_mod, cider_mod = (_import_coco(m) for m in ("bleu.bleu", "rouge.rouge", "cider.cider"))
    if not predictions:
        return CaptionScores({m: MetricValue(None, "no items") for m in metrics}, 0, tokenizer)
    reason = None
    if tokenizer != "simple":
        ok, why = java_status()
        if not ok and tokenizer == "ptb":
            raise ConfigError(f"tokenizer='ptb' needs Java: {why}. Use tokenizer='auto' or 'simple'",
                              field="tokenizer", value=tokenizer)
        reason = None if ok else f"PTB tokenizer unavailable: {why}"
        tokenizer = "ptb" if ok else "simple"
    hypotheses = {k: [v] for k, v in predictions.items()}
    try:
        res, gts = _tokenize(hypotheses, tokenizer), _tokenize(references, tokenizer)
    except Exception as e:  # noqa: BLE001 - e.g. read-only site-packages for the PTB temp file
        reason, tokenizer = f"PTB tokenizer failed ({type(e).__name__}: {e})", "simple"
        res, gts = _tokenize(hypotheses, "simple"), _tokenize(references, "simple")
    values: dict[str, MetricValue] = {}
    if any(m.startswith("BLEU") for m in metrics):
        bleu, _ = bleu_mod.Bleu(4).compute_score(gts, res, verbose=0)
        values.update({f"BLEU-{i + 1}": MetricValue(float(b)) for i, b in enumerate(bleu)})
    if "METEOR" in metrics:
        values["METEOR"] = _meteor(gts, res)
    if "ROUGE-L" in metrics:
        values["ROUGE-L"] = MetricValue(float(rouge_mod.Rouge().compute_score(gts, res)[0]))
    if "CIDEr" in metrics:
        values["CIDEr"] = MetricValue(float(cider_mod.Cider().compute_score(gts, res)[0]))
    return CaptionScores({m: values[m] for m in metrics}, len(predictions), tokenizer, reason)


def scanqa_scores(predictions: Mapping[Any, str], references: Mapping[Any, Sequence[str]], *,
                  tokenizer: Literal["auto", "ptb", "simple"] = "auto") -> dict[str, Any]:
    """ScanQA report: EM@1 (raw, normalised, refined) + BLEU-1, BLEU-4, METEOR, ROUGE-L, CIDEr."""
    _check_ids(predictions, references)
    keys = list(predictions)
    em = exact_match_scores([predictions[k] for k in keys], [references[k] for k in keys])
    captions = caption_scores(predictions, references, tokenizer=tokenizer,
                              metrics=("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"))
    return {**em, **captions.to_dict()}
