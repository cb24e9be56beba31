"""Setting up a study: create the store from the pairs files, or reopen it; add raters; issue links.

The first `serve` fixes the study (the answers, pointwise or pairwise, ids per rater, the reference
shown or not, the seed) in the store. A later `serve` on the same store reopens it: a flag given again
must agree with the store, and the pairs files, when given, must hold exactly the stored answers. New
rater names get a queue and a link; known raters keep their queue and their link (whose token the store
does not hold, so it cannot be printed again: `new_links` replaces it, and the old link stops working).

A server holds the store's lock (`<store>.lock`, `plumbing.locks.FileLock`) for as long as it runs:
each server reads the link hashes once, so a second server on the same store could keep serving a
link that the first replaced. `open_study(..., exclusive=True)` therefore refuses a store that another
live process serves, in one line naming its pid, before anything is written.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from plumbing.errors import EXIT_USAGE
from plumbing.locks import FileLock

from judge.errors import JudgeError
from judge.human.assign import build_queue, choose_ids, rater_seed
from judge.human.auth import new_token, token_hash
from judge.human.store import Store, create_store

RATER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


@dataclass
class Study:
    """An open store and the links issued by this start (`links[rater]` is the token, or None when the
    rater's link was issued by an earlier start)."""

    store: Store
    settings: dict
    links: dict[str, str | None]
    created: bool
    lock: FileLock | None = None

    def close(self) -> None:
        """Close the store and give its lock back."""
        self.store.close()
        if self.lock is not None:
            self.lock.release()


def parse_raters(text: str, flag: str = "--raters") -> list[str]:
    """`alice,bob,carol` -> names; each 1-32 letters, digits, `_.-`, no repeats; errors name `flag`."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise JudgeError(f"{flag}: give at least one name, e.g. {flag} alice,bob,carol")
    for name in names:
        if not RATER_NAME.fullmatch(name):
            raise JudgeError(f"{flag}: {name!r} is not a valid name (1-32 letters, digits, '_', '.', '-')")
    if len(set(names)) != len(names):
        raise JudgeError(f"{flag}: a name appears twice")
    return names


def lock_store(path: Path) -> FileLock:
    """Take the store's lock (`<store>.lock`, beside the store once symbolic links are resolved).

    Raises:
        JudgeError: exit status 2 while another live process serves this store (its pid is named).
        OSError: the lock file cannot be created (a read-only folder).
    """
    lock = FileLock(Path(str(path.resolve()) + ".lock"))
    if not lock.acquire():
        raise JudgeError(f"--store: {path} is served by another `python -m judge.human serve` (pid "
                         f"{lock.holder()}); one server per store: stop that one first (Ctrl-C), then start "
                         "again (with --new-links to replace a link)", exit_code=EXIT_USAGE)
    return lock


def _fingerprint(items) -> str:
    """SHA-256 over the answers (id, system, prompt, reference, response), order-independent."""
    h = hashlib.sha256()
    for item in sorted(items, key=lambda i: (i.id, i.model)):
        for part in (item.id, item.model, item.prompt, item.reference or "", item.response):
            h.update(part.encode("utf-8") + b"\0")
    return h.hexdigest()


def _check_same(settings: dict, given: dict, path: Path) -> None:
    """A flag given on a later start must match the stored study."""
    flags = {"mode": "--pairwise", "per_rater": "--per-rater", "with_reference": "--with-reference", "seed": "--seed"}
    for key, value in given.items():
        if value is not None and settings[key] != value:
            raise JudgeError(f"{flags[key]}: the study in {path} was created with {key.replace('_', ' ')} "
                             f"{settings[key]!r}, not {value!r}; a store keeps its design (use a new --store "
                             "for another design)")


def _check_new_links(new_links: list[str] | None, raters: list[str]) -> None:
    """A new link is printed only for a rater served by this start, so each must be in `raters`."""
    outside = [name for name in new_links or [] if name not in raters]
    if outside:
        raise JudgeError(f"--new-links: {outside[0]!r} is not in --raters, so its new link would not be printed "
                         f"and the old one would stop working; add {outside[0]} to --raters")


def _create(path: Path, pairs: list[str] | None, per_rater, pairwise, with_reference, seed) -> tuple[dict, list]:
    """Read and check the pairs files of a new store: (its settings, the answers)."""
    from judge.pairs import models_in_order, paired_records  # reads with evalkit's reader: only when needed

    if not pairs:
        raise JudgeError(f"--pairs: {path} does not exist yet; give the pairs files to rate")
    items = paired_records(pairs)
    systems = models_in_order(items)
    if pairwise and len(systems) < 2:
        raise JudgeError("--pairwise: needs at least two systems (two --pairs files)")
    if path.parent and not path.parent.is_dir():
        raise JudgeError(f"--store: folder {path.parent} does not exist")
    settings = {"mode": "pairwise" if pairwise else "pointwise", "per_rater": per_rater,
                "with_reference": bool(with_reference), "seed": 0 if seed is None else seed,
                "systems": systems, "ids": list(dict.fromkeys(i.id for i in items)),
                "pairs_files": [str(p) for p in pairs], "answers_sha256": _fingerprint(items)}
    return settings, items


def _check_reopened(store: Store, path: Path, pairs, per_rater, pairwise, with_reference, seed) -> None:
    """The flags and pairs files given again must agree with the stored study."""
    settings = store.settings()
    mode = None if pairwise is None else ("pairwise" if pairwise else "pointwise")
    _check_same(settings, {"mode": mode, "per_rater": per_rater, "with_reference": with_reference, "seed": seed},
                path)
    if pairs:
        from judge.pairs import paired_records

        if _fingerprint(paired_records(pairs)) != settings["answers_sha256"]:
            raise JudgeError(f"--pairs: these files differ from the answers stored in {path} "
                             f"(created from {', '.join(settings['pairs_files'])})")


def _issue_links(store: Store, settings: dict, raters: list[str], new_links: list[str] | None) -> dict:
    """Queues and links for raters new to the store, new links for `new_links`; {rater: token or None}."""
    known = {r["name"] for r in store.raters()}
    links: dict[str, str | None] = {}
    for name in raters:
        if name in known:
            links[name] = None
            continue
        seed_r = rater_seed(settings["seed"], name)
        ids = choose_ids(settings["ids"], store.coverage(), settings["per_rater"], settings["seed"])
        queue, flip = build_queue(ids, settings["systems"], settings["mode"] == "pairwise", seed_r)
        token = new_token()
        store.add_rater(name, token_hash(token), seed_r, flip, queue)
        links[name] = token
    for name in new_links or []:
        if name in known:
            token = new_token()
            store.set_token(name, token_hash(token))
            links[name] = token
    return links


def open_study(store_path, pairs: list[str] | None, raters: list[str], per_rater: int | None = None,
               pairwise: bool | None = None, with_reference: bool | None = None, seed: int | None = None,
               new_links: list[str] | None = None, exclusive: bool = False) -> Study:
    """Create or reopen the study in `store_path`, add new raters, and issue their links.

    Args:
        exclusive: hold the store's lock until `Study.close()` (a server does): refused while another
            live process holds it. Everything is checked before the lock is taken, and the lock before
            the store is written, so bad input leaves no file behind.

    Raises:
        JudgeError: bad input (exit status 2), or a store another server holds (2).
    """
    path = Path(store_path)
    if per_rater is not None and per_rater < 1:
        raise JudgeError("--per-rater: must be at least 1")
    _check_new_links(new_links, raters)
    created = not path.exists()
    new = _create(path, pairs, per_rater, pairwise, with_reference, seed) if created else None
    lock = lock_store(path) if exclusive else None
    store = None
    try:
        if new is not None:
            create_store(path, *new)
        store = Store(path)
        if not created:
            _check_reopened(store, path, pairs, per_rater, pairwise, with_reference, seed)
        settings = store.settings()
        return Study(store, settings, _issue_links(store, settings, raters, new_links), created, lock)
    except BaseException:
        if store is not None:
            store.close()
        if lock is not None:
            lock.release()
        raise
