"""The Hugging Face Hub: the one rule for "is this a Hub id", downloads, and the one-line access check.

Every part of the project that accepts "a local folder or a Hub id" (model loading, the tokenizer,
training's `--base`, the pipeline's access check) asks `is_hub_id` here, and every message about gated
Llama weights is `access_message`, so the rule and the wording exist once.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import MiniLlamaError

# What to do about a gated model (Meta's licence for Llama 2 weights on huggingface.co).
LICENCE = ("accept the licence on https://huggingface.co/{repo} (Meta's form for Llama 2), then run "
           "`hf auth login` or set HF_TOKEN on a machine that can reach huggingface.co")


def is_hub_id(text: str) -> bool:
    """True for `org/name` that is not a local path: exactly one "/", not starting with ".", "/" or "~"."""
    text = str(text)
    if not text or text.startswith((".", "/", "~")) or text.count("/") != 1:
        return False
    return not (os.sep != "/" and os.sep in text)


def download_model(repo_id: str, allow_patterns: list[str]) -> Path:
    """`snapshot_download` of the files matching `allow_patterns` into the HF cache; one line on failure.

    `huggingface_hub` honours `HF_TOKEN`, `HF_HUB_OFFLINE` and `HF_HOME`/`HF_HUB_CACHE`.
    """
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(repo_id=repo_id, allow_patterns=allow_patterns))
    except Exception as exc:  # any Hub failure (offline, gated, not found, HTTP) becomes one line
        raise MiniLlamaError(f"{repo_id}: not a local folder, and downloading it from the Hugging Face Hub "
                             f"failed ({_first_line(exc)})", exit_code=_exit_code(exc)) from None


def download_file(repo_id: str, filename: str) -> Path:
    """`hf_hub_download` of one file of a Hub repo; one line on failure."""
    try:
        from huggingface_hub import hf_hub_download
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:
        raise MiniLlamaError(f"{repo_id}: not a local path, and downloading {filename} from the Hugging Face "
                             f"Hub failed ({_first_line(exc)})", exit_code=_exit_code(exc)) from None


def _exit_code(exc: Exception) -> int:
    """2 (bad input) when the repo, revision or file does not exist or is gated: the id is wrong or access is
    missing; 1 (a failure while running) otherwise: offline without a cached copy, a timeout, a server error."""
    from huggingface_hub import errors

    missing = isinstance(exc, (errors.RepositoryNotFoundError, errors.RevisionNotFoundError)) or (
        isinstance(exc, errors.EntryNotFoundError) and not isinstance(exc, errors.LocalEntryNotFoundError))
    return 2 if missing else 1


def _first_line(exc: Exception) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {first}"


def access_problem(repo_id: str, timeout: float = 10.0) -> tuple[str, str] | None:
    """Why Hub model `repo_id`'s config.json cannot be had here, or None if it can (cached or reachable).

    One HEAD request with a short timeout and no retries (hf_hub_download retries for ~25 s offline).

    Returns:
        (kind, detail): kind is "offline" (HF_HUB_OFFLINE set, no cached copy), "network" (huggingface.co
        unreachable), "gated" (401/403: licence not accepted or no token), "missing" (no such repo) or
        "other"; detail is the underlying error in a few words.
    """
    from huggingface_hub import constants, errors, get_hf_file_metadata, hf_hub_url, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return None
    if constants.HF_HUB_OFFLINE:
        return "offline", "HF_HUB_OFFLINE is set and there is no cached copy"
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, "config.json"), timeout=timeout)
    except errors.GatedRepoError:
        return "gated", "gated repo"
    except errors.RepositoryNotFoundError:
        return "missing", "no such repo, or a private one"
    except errors.HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        return ("gated" if status in (401, 403) else "other"), f"HTTP {status}"
    except Exception as e:  # httpx's ConnectError / timeouts carry no common public base to import
        names = {c.__name__ for c in type(e).__mro__}
        if names & {"TransportError", "ConnectionError", "TimeoutError"}:
            return "network", " ".join(str(e).split()) or type(e).__name__
        return "other", f"{type(e).__name__}: {' '.join(str(e).split())}"
    return None


def access_message(repo_id: str, kind: str, detail: str, local: str) -> str:
    """The one-line reason for `access_problem`'s (kind, detail); `local` says how to pass a local copy."""
    licence = LICENCE.format(repo=repo_id)
    if kind == "network":
        return (f"{repo_id}: cannot reach huggingface.co ({detail}); check the network or set HF_HUB_OFFLINE=1 "
                f"with a cached copy, or {local}")
    if kind == "missing":
        return f"{repo_id}: no such model on huggingface.co ({detail}); check the name, or {local}"
    if kind == "offline":
        return (f"{repo_id}: not in the local Hugging Face cache ({detail}); unset HF_HUB_OFFLINE to download "
                f"({licence}), or {local}")
    return f"{repo_id}: cannot download the base model ({detail}); {licence}, or {local}"


def check_access(model: str | None, local: str) -> None:
    """Fail in one line (`MiniLlamaError`), before hours of work, when a Hub model's files cannot be had.

    Local folders, empty values and "demo" need no check.
    """
    if not model or model == "demo" or Path(model).expanduser().exists() or not is_hub_id(model):
        return
    problem = access_problem(model)
    if problem:  # a wrong id or a missing licence is bad input (2); no network or no cache, a failure (1)
        raise MiniLlamaError(access_message(model, *problem, local),
                             exit_code=2 if problem[0] in ("missing", "gated") else 1)
