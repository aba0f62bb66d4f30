"""Column names recognised as the text (or the two texts of a pair) and the label, shared by
training data and `predict`'s input files; a module of its own so the torch-free runtime can
read them without `datasets`."""

from edgetune.errors import InputError

TEXT_COLUMN_NAMES = ("text", "sentence", "content", "document", "review", "body", "question")
LABEL_COLUMN_NAMES = ("label", "labels", "category", "class", "target", "sentiment", "topic")
# Sentence-pair tasks (NLI, paraphrase, QA entailment): the first pair found wins.
PAIR_COLUMN_NAMES = (
    ("sentence1", "sentence2"),
    ("premise", "hypothesis"),
    ("question", "sentence"),
    ("question1", "question2"),
    ("text_a", "text_b"),
    ("text1", "text2"),
)


def split_text_columns(value: str | None) -> list[str] | None:
    """`--text-column a,b` names a pair; `--text-column text` one column."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",")]
    if len(names) > 2 or not all(names):
        raise InputError(
            f"--text-column '{value}': give one column, or two for a sentence pair (a,b)"
        )
    return names


def detect_pair(columns: list[str]) -> list[str] | None:
    """The first known pair of text columns present (case-insensitive), as named in the file."""
    lower = {c.lower(): c for c in columns}
    return next(
        ([lower[a], lower[b]] for a, b in PAIR_COLUMN_NAMES if a in lower and b in lower), None
    )
