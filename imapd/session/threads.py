"""THREAD (RFC 5256 ORDEREDSUBJECT and REFERENCES, Dovecot's REFS) as pure functions over cached metadata.

Each function takes :class:`~imapd.session.sorting.SortRow` rows and returns threads in the nested tuple
form of :data:`imapd.protocol.responses.Thread`, holding each row's ``number`` (sequence number for
THREAD, UID for UID THREAD): ``(3, 6, (4, 23), (44, 7, 96))`` is 3, its only child 6, whose two children
start the branches 4→23 and 44→7→96. A thread whose root is a missing message is a tuple of branches only,
``((3,), (5,))``.

"Sent date" is RFC 5256's: the Date header in UTC, INTERNALDATE when missing; equal dates are ordered by
sequence number (UIDs grow with sequence numbers, so the UID decides).

REFERENCES follows RFC 5256 section 3 step by step (comments name the steps):

1. Containers are found by Message-ID. A message without Message-ID, or whose Message-ID already belongs
   to an earlier message, gets a container of its own that no reference can reach. The references of a
   message are its References header, or the first msg-id of In-Reply-To when References has none.
   Consecutive references are linked parent→child unless the child already has a parent or the link
   would make a loop. The message's own parent is then the last reference (replacing a parent presumed
   from another message's References); when that would make a loop the existing links stay. A reference
   to the message's own Message-ID is ignored. With no references the message is a root (any presumed
   parent is dropped, as in JWZ's original algorithm).
2. Every parentless container is a root.
3. Dummies (referenced but absent messages) are pruned bottom-up: a childless dummy goes; a dummy with
   children is replaced by them, except at the top level where it stays when it has two or more.
4. The roots are ordered by sent date (a dummy by its first child, after sorting its children).
5. Roots with the same non-empty base subject are gathered: the table keeps, per subject, a dummy over a
   message and a non-reply over a reply; then dummies are merged, a message joins a dummy, a reply
   becomes a child of a non-reply, and two replies or two non-replies become siblings under a new dummy.
6. Every set of siblings is ordered by sent date, deepest first (a dummy sorts as its first child).

REFS (Dovecot's THREAD=REFS, draft-ietf-morg-inthread): steps 1-3 as REFERENCES, no step 5 (subjects
play no part). Threads are ordered by their newest message (largest sent date in the whole thread, ties
by the larger sequence number), oldest thread first, so the thread with the latest activity is last;
below the top level, siblings are ordered by their own sent date as in step 6.

ORDEREDSUBJECT (RFC 5256 section 3): messages are grouped by base subject; in each group, ordered by sent
date, the first message is the parent of all the others (siblings of each other); threads are ordered
by the sent date of their first message.

Everything is iterative: a 100,000-message reply chain does not hit the recursion limit here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

from imapd.protocol.responses import Thread
from imapd.session.sorting import SortRow, sent_date

__all__ = ["thread_orderedsubject", "thread_references", "thread_refs"]

_Key = tuple[int, int]


class _Container:
    """One node of the thread tree: a message, or a dummy (``row is None``) for a referenced absent one."""

    __slots__ = ("children", "key", "parent", "row")

    def __init__(self, row: SortRow | None = None) -> None:
        self.row = row
        self.parent: _Container | None = None
        self.children: list[_Container] = []
        self.key: _Key = (0, 0) if row is None else (sent_date(row), row.uid)

    def is_ancestor_of(self, other: _Container) -> bool:
        """True when ``self`` is ``other`` or one of its ancestors."""
        if not self.children:  # fast path: a leaf is nobody's ancestor
            return self is other
        node: _Container | None = other
        while node is not None:
            if node is self:
                return True
            node = node.parent
        return False

    def unlink(self) -> None:
        parent = self.parent
        if parent is not None:
            parent.children.remove(self)
            self.parent = None

    def adopt(self, child: _Container) -> None:
        child.unlink()
        child.parent = self
        self.children.append(child)


def _sort_key(container: _Container) -> _Key:
    return container.key


# -- ORDEREDSUBJECT -------------------------------------------------------------------------------------


def thread_orderedsubject(rows: Iterable[SortRow]) -> list[Thread]:
    """RFC 5256 THREAD=ORDEREDSUBJECT."""
    ordered = sorted(rows, key=lambda r: (r.meta.base_subject, sent_date(r), r.uid))
    groups: list[list[SortRow]] = []
    previous: str | None = None
    for row in ordered:
        if row.meta.base_subject != previous:
            groups.append([])
            previous = row.meta.base_subject
        groups[-1].append(row)
    groups.sort(key=lambda g: (sent_date(g[0]), g[0].uid))
    threads: list[Thread] = []
    for group in groups:
        first, rest = group[0].number, group[1:]
        if len(rest) == 1:
            threads.append((first, rest[0].number))
        else:
            threads.append((first, *((row.number,) for row in rest)))
    return threads


# -- REFERENCES and REFS ----------------------------------------------------------------------------------


def _link(rows: Iterable[SortRow]) -> list[_Container]:
    """Steps 1 and 2: every container, linked; returns the roots in creation order."""
    id_table: dict[str, _Container] = {}
    containers: list[_Container] = []
    for row in rows:
        meta = row.meta
        # (1A) the message's own container
        container: _Container | None = None
        if meta.message_id:
            container = id_table.get(meta.message_id)
            if container is None or container.row is not None:  # new, or a duplicate Message-ID
                fresh = _Container(row)
                if container is None:
                    id_table[meta.message_id] = fresh
                container = fresh
                containers.append(fresh)
            else:  # it was referenced before: fill the dummy
                container.row = row
                container.key = (sent_date(row), row.uid)
        else:
            container = _Container(row)
            containers.append(container)
        # (1B) link the references in order
        refs = meta.references or meta.in_reply_to[:1]
        parent: _Container | None = None
        for ref in refs:
            ref_container = id_table.get(ref)
            if ref_container is None:
                ref_container = id_table[ref] = _Container()
                containers.append(ref_container)
            elif ref_container is container:  # the message references itself: ignore that reference
                continue
            if (parent is not None and ref_container.parent is None
                    and not ref_container.is_ancestor_of(parent)):
                parent.adopt(ref_container)
            parent = ref_container
        # (1C) the message's own last reference is its parent: any parent guessed from another message's
        # References is thrown away. A parent that would make a loop is not linked either, so the message
        # becomes a root, as when it has no references (RFC 5256 4, step 1C).
        if parent is not None and container.is_ancestor_of(parent):
            parent = None
        if parent is None:
            container.unlink()
        elif container.parent is not parent:
            parent.adopt(container)
    # (2) the root set
    return [c for c in containers if c.parent is None]


def _preorder(roots: Sequence[_Container]) -> list[_Container]:
    out: list[_Container] = []
    stack = list(reversed(roots))
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(node.children))
    return out


def _prune(roots: list[_Container]) -> list[_Container]:
    """Step 3 (RFC 5256 step 3, "prune dummy messages"), bottom-up; returns the new root set."""
    for node in reversed(_preorder(roots)):  # children before their parents
        if not any(child.row is None for child in node.children):
            continue
        kept: list[_Container] = []
        for child in node.children:
            if child.row is not None:
                kept.append(child)
            else:  # its own children were pruned already: none of them is a dummy
                for grandchild in child.children:
                    grandchild.parent = node
                    kept.append(grandchild)
                child.children = []
                child.parent = None
        node.children = kept
    new_roots: list[_Container] = []
    for root in roots:
        if root.row is not None or len(root.children) > 1:
            new_roots.append(root)
        elif root.children:  # a dummy with one child: promote it
            only = root.children[0]
            only.parent = None
            new_roots.append(only)
    return new_roots


def _sort_tree(roots: list[_Container]) -> None:
    """Step 6: sort every set of siblings by sent date, deepest first; a dummy sorts as its first child."""
    for node in reversed(_preorder(roots)):
        if len(node.children) > 1:
            node.children.sort(key=_sort_key)
        if node.row is None and node.children:
            node.key = node.children[0].key
    roots.sort(key=_sort_key)


def _subject(container: _Container) -> str:
    row = container.row if container.row is not None else container.children[0].row
    return "" if row is None else row.meta.base_subject


def _gather_subjects(roots: list[_Container]) -> list[_Container]:
    """Step 5: merge roots that share a base subject; returns the new root set (unordered)."""
    table: dict[str, _Container] = {}
    for root in roots:  # (5B)
        subject = _subject(root)
        if not subject:
            continue
        known = table.get(subject)
        if (known is None
                or (root.row is None and known.row is not None)
                or (known.row is not None and root.row is not None
                    and known.row.meta.is_reply and not root.row.meta.is_reply)):
            table[subject] = root
    new_dummies: list[_Container] = []
    for root in roots:  # (5C)
        if root.parent is not None or (root.row is None and not root.children):
            continue  # already merged into another root
        subject = _subject(root)
        if not subject:
            continue
        other = table[subject]
        if other is root:
            continue
        if other.row is None and root.row is None:  # both dummies: merge the children
            for child in list(root.children):
                other.adopt(child)
        elif other.row is None:
            other.adopt(root)
        elif root.row is None:
            root.adopt(other)
            table[subject] = root
        elif root.row.meta.is_reply and not other.row.meta.is_reply:
            other.adopt(root)
        elif other.row.meta.is_reply and not root.row.meta.is_reply:
            root.adopt(other)
            table[subject] = root
        else:  # both replies or neither: siblings under a new dummy
            dummy = _Container()
            dummy.adopt(other)
            dummy.adopt(root)
            table[subject] = dummy
            new_dummies.append(dummy)
    return [c for c in (*roots, *new_dummies) if c.parent is None and (c.row is not None or c.children)]


def _thread_of(root: _Container) -> Thread:
    """The nested tuple of one tree, built without recursion."""
    top: list[object] = []
    groups = [top]  # every group, each after the group that contains it
    work: list[tuple[_Container, list[object]]] = [(root, top)]
    while work:
        node, items = work.pop()
        while True:  # follow the single-child chain
            if node.row is not None:
                items.append(node.row.number)
            if len(node.children) != 1:
                break
            node = node.children[0]
        for child in node.children:  # two or more: one branch each
            branch: list[object] = []
            items.append(branch)
            groups.append(branch)
            work.append((child, branch))
    frozen: dict[int, Thread] = {}
    for group in reversed(groups):  # inner groups first
        frozen[id(group)] = tuple(frozen[id(x)] if isinstance(x, list) else cast(int, x) for x in group)
    return frozen[id(top)]


def thread_references(rows: Iterable[SortRow]) -> list[Thread]:
    """RFC 5256 THREAD=REFERENCES."""
    roots = _prune(_link(rows))
    # (4) order the roots; a dummy sorts as its first child
    for root in roots:
        if root.row is None:
            root.children.sort(key=_sort_key)
            root.key = root.children[0].key
    roots.sort(key=_sort_key)
    roots = _gather_subjects(roots)  # (5)
    _sort_tree(roots)  # (6)
    return [_thread_of(root) for root in roots]


def thread_refs(rows: Iterable[SortRow]) -> list[Thread]:
    """Dovecot's THREAD=REFS: REFERENCES without subject gathering, threads ordered by newest message."""
    roots = _prune(_link(rows))
    _sort_tree(roots)
    newest: dict[int, _Key] = {}
    for node in reversed(_preorder(roots)):  # children first
        best = (-1, -1) if node.row is None else node.key
        for child in node.children:
            child_newest = newest[id(child)]
            if child_newest > best:
                best = child_newest
        newest[id(node)] = best
    roots.sort(key=lambda root: newest[id(root)])
    return [_thread_of(root) for root in roots]
