"""The token count under a prompt box: exact once the model's tokenizer has counted, else an estimate."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from freeswim_engine.request import count_prompt_tokens


class TokenCountLabel(QLabel):
    """Shows how many tokens a prompt has, with the ``warning`` property set past the text encoder's limit."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tokenCount")
        self.setWordWrap(True)

    def show_count(self, text: str, exact: int | None, max_tokens: int, has_tokenizer: bool) -> None:
        """Show ``exact`` when given, else an estimate labelled as such."""
        if exact is None:
            count = count_prompt_tokens(text, None)[0]
            caption = self.tr("about {count} tokens (estimate: the model's tokenizer is not installed)")
            if has_tokenizer:
                caption = self.tr("about {count} tokens (estimate, counting with the model's tokenizer...)")
        else:
            count = exact
            caption = self.tr("1 token") if count == 1 else self.tr("{count} tokens")
        caption = caption.format(count=count)
        too_long = count > max_tokens
        if too_long:
            caption += " " + self.tr("- over {max}, the text encoder ignores the rest").format(max=max_tokens)
        self.setText(caption)
        self.setProperty("warning", too_long)
        self.style().unpolish(self)
        self.style().polish(self)
