"""The Models page's CNN panel: the network that describes every photo, its fine-tuned
versions with their held-out accuracy, fine-tuning it on the shop's labelled photos, and
putting a version in service (both background jobs, :mod:`vitrine.jobs.cnn_jobs`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vitrine.classify.cnn_service import UnknownCnnVersion
from vitrine.runtime import Runtime

INPUT_SIZES = {
    128: "128 px (photos up to ~150 px; the default)",
    112: "112 px (fastest)",
    160: "160 px",
    224: "224 px (large photos; slow on a CPU)",
}
MAX_EPOCHS = 50


class CnnRequestError(ValueError):
    """Input from the panel that cannot be used; the message says why."""


@dataclass
class CnnPanel:
    """Reads and queues through the runtime's CNN service."""

    runtime: Runtime
    trainable_fields: Callable[[], list[str]]  # the fields products have values of

    def panel(self) -> dict[str, Any]:
        listed = self.runtime.cnn.versions()
        return {
            "in_service": listed["in_service"],
            "versions": listed["versions"],
            "input_sizes": INPUT_SIZES,
        }

    def finetune(
        self, fields: list[str], epochs: str, input_size: str, user: str
    ) -> dict[str, Any]:
        """Queue fine-tuning on ``fields`` (each must be one the shop can train)."""
        chosen = sorted({f.strip() for f in fields if f.strip()})
        if not chosen:
            raise CnnRequestError("Choose at least one field for the network to learn.")
        unknown = sorted(set(chosen) - set(self.trainable_fields()))
        if unknown:
            raise CnnRequestError(f"No product has a value for {', '.join(unknown)}.")
        try:
            n_epochs, size = int(epochs), int(input_size)
        except ValueError:
            raise CnnRequestError("Epochs and input size are whole numbers.") from None
        if not 1 <= n_epochs <= MAX_EPOCHS:
            raise CnnRequestError(f"Epochs are 1 to {MAX_EPOCHS}.")
        if size not in INPUT_SIZES:
            raise CnnRequestError(f"The input size is one of {', '.join(map(str, INPUT_SIZES))}.")
        params = {"fields": chosen, "epochs": n_epochs, "input_size": size, "device": "auto"}
        return self.runtime.cnn.finetune(params, f"admin {user}"[:64])

    def switch(self, version: str, user: str) -> dict[str, Any]:
        try:
            return self.runtime.cnn.switch(version.strip(), f"admin {user}"[:64])
        except UnknownCnnVersion as exc:
            raise CnnRequestError(str(exc)) from None
