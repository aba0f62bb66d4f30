"""Column names recognised as the text and the label, shared by training data and `predict`'s
input files; a module of its own so the torch-free runtime can read them without `datasets`."""

TEXT_COLUMN_NAMES = ("text", "sentence", "content", "document", "review", "body", "question")
LABEL_COLUMN_NAMES = ("label", "labels", "category", "class", "target", "sentiment", "topic")
