"""Fail fast on a hub id that cannot be loaded, instead of minutes of retries.

A name that is not a local path is asked about once, with a short timeout. No such repository,
or no network and nothing in the local cache: one clear line, in seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgetune.errors import InputError

TIMEOUT_SECONDS = 5.0


def check_hub_id(repo_id: str, repo_type: str, what: str) -> None:
    """Raise InputError unless `repo_id` exists on the hub or sits in the local cache."""
    from huggingface_hub import HfApi, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    local = f"no such local folder ({Path.cwd() / repo_id} does not exist)"
    try:
        cached = try_to_load_from_cache(
            repo_id, "config.json" if repo_type == "model" else "README.md", repo_type=repo_type
        )
    except HFValidationError:
        raise InputError(f"{what} '{repo_id}': {local}, and not a valid hub id") from None
    if isinstance(cached, str) or os.environ.get("HF_HUB_OFFLINE") == "1":
        return  # the library reads its cache without the network
    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=TIMEOUT_SECONDS)
    except RepositoryNotFoundError:
        raise InputError(
            f"{what} '{repo_id}': {local}, and no such {repo_type} on the "
            "Hugging Face hub (or it is private: log in with `hf auth login`)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - connection, timeout, proxy, TLS: all "unreachable"
        raise InputError(
            f"{what} '{repo_id}': {local}, and the Hugging Face hub cannot be reached "
            f"({exc.__class__.__name__}); give a local folder, or check the network "
            "(HF_ENDPOINT, proxies)"
        ) from None
