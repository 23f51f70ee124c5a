"""``conveyor runs lineage RUN_OR_ARTIFACT``: where a run's or artifact's data came from and went.

Walks the lineage edges (artifacts consumed and produced by runs) up, down or
both ways from a run, a pipeline run (its steps), or an artifact, and prints a
tree. Step runs that only reused a cached result are folded into a count in the
tree, as are step logs (the JSON keeps every edge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer

from conveyor.cli import context

if TYPE_CHECKING:
    from rich.tree import Tree

    from conveyor.core.entities import LineageEdge, Run
    from conveyor.stores.metadata.base import RunStore

_STYLE = {"RUNNING": "cyan", "FINISHED": "green", "FAILED": "red", "KILLED": "yellow"}
_HEX = set("0123456789abcdef")


def lineage(
    target: str = typer.Argument(
        ..., metavar="RUN_OR_ARTIFACT", help="A run id or unique prefix, or a sha256 or prefix."
    ),
    upstream: bool = typer.Option(False, "--upstream", help="Only where it came from."),
    downstream: bool = typer.Option(False, "--downstream", help="Only what came from it."),
    depth: int = typer.Option(10, "--depth", min=1, help="Follow at most this many runs away."),
    as_json: bool = typer.Option(False, "--json", help="Print the graph as JSON."),
) -> None:
    """Show the lineage of a run or an artifact as a tree (both directions by default).

    Example: conveyor runs lineage 3f2a9c1d --upstream
    """
    up, down = (upstream or not downstream), (downstream or not upstream)
    tracker = context.tracker()
    tracker.flush()
    kind, ident = _resolve(target)
    graph = _Graph(tracker.runs, depth)
    if kind == "run":
        tree = graph.run_root(ident, up, down)
    else:
        tree = graph.artifact_root(ident, up, down)
    if as_json:
        context.print_json(graph.as_dict(kind, ident))
    else:
        context.console().print(tree)


def _resolve(target: str) -> tuple[str, str]:
    from conveyor.errors import NotFoundError, ValidationError

    text = target.strip().lower().removeprefix("sha256:")
    if len(text) < 6 or not set(text) <= _HEX:
        raise ValidationError(
            "target", "give a run id or a sha256 (or a prefix of at least 6 hex digits)"
        )
    if len(text) == 64:
        return "artifact", text
    runs = context.find_run_ids(text) if len(text) <= 32 else []
    digests = sorted(d for d in context.tracker().runs.referenced_digests() if d.startswith(text))
    matches = [("run", r) for r in runs] + [("artifact", d) for d in digests[:2]]
    if not matches:
        raise NotFoundError(f"no run id and no artifact sha256 starts with {target!r}")
    if len(matches) > 1:
        raise ValidationError("target", f"{target!r} matches several runs or artifacts; give more")
    return matches[0]


@dataclass
class _Graph:
    """The lineage seen so far, read on demand from the store, and its tree rendering."""

    store: RunStore
    depth: int
    runs: dict[str, Run] = field(default_factory=dict)
    edges: set[LineageEdge] = field(default_factory=set)
    _by_run: dict[str, list[LineageEdge]] = field(default_factory=dict)
    _by_artifact: dict[str, list[LineageEdge]] = field(default_factory=dict)
    _expanded: set[tuple[str, str]] = field(default_factory=set)

    # -- reading -----------------------------------------------------------
    def run(self, run_id: str) -> Run:
        if run_id not in self.runs:
            self.runs[run_id] = self.store.get_run(run_id)
        return self.runs[run_id]

    def of_run(self, run_id: str) -> list[LineageEdge]:
        if run_id not in self._by_run:
            self._by_run[run_id] = self.store.lineage_of_run(run_id)
            self.edges.update(self._by_run[run_id])
        return self._by_run[run_id]

    def of_artifact(self, sha256: str) -> list[LineageEdge]:
        if sha256 not in self._by_artifact:
            self._by_artifact[sha256] = self.store.lineage_of_artifact(sha256)
            self.edges.update(self._by_artifact[sha256])
        return self._by_artifact[sha256]

    # -- roots -------------------------------------------------------------
    def run_root(self, run_id: str, up: bool, down: bool) -> Tree:
        from rich.tree import Tree

        run = self.run(run_id)
        tree = Tree(self._run_label(run))
        children = [] if self.of_run(run_id) else self._children(run_id)
        if children:  # a pipeline run: its steps carry the lineage
            for child in children:
                self._expand_run(tree.add(self._run_label(child)), child.id, up, down, 1)
        else:
            self._expand_run(tree, run_id, up, down, self.depth)
        return tree

    def artifact_root(self, sha256: str, up: bool, down: bool) -> Tree:
        from rich.tree import Tree

        names = sorted({e.name for e in self.of_artifact(sha256) if e.name})
        tree = Tree(
            f"[bold]artifact[/] sha256:{sha256}" + (f"  {', '.join(names)}" if names else "")
        )
        if up:
            self._add_runs(tree.add("[dim]produced by[/]"), sha256, "output", "up", self.depth)
        if down:
            self._add_runs(tree.add("[dim]consumed by[/]"), sha256, "input", "down", self.depth)
        return tree

    def _children(self, run_id: str) -> list[Run]:
        found = self.store.search_runs(
            None, f"attributes.parent_run_id = '{run_id}'", ["attributes.start_time ASC"], 10_000
        )
        for child in found:
            self.runs[child.id] = child
        return found

    # -- walking -----------------------------------------------------------
    def _expand_run(self, node: Tree, run_id: str, up: bool, down: bool, depth: int) -> None:
        edges = self.of_run(run_id)
        if up:
            for edge in (e for e in edges if e.direction == "input"):
                branch = node.add(f"[blue]⬆ consumed[/] {_artifact_label(edge)}")
                if depth > 1:
                    self._add_runs(branch, edge.sha256, "output", "up", depth - 1)
        if down:
            for edge in (e for e in edges if e.direction == "output" and self._shown(e)):
                branch = node.add(f"[magenta]⬇ produced[/] {_artifact_label(edge)}")
                if depth > 1:
                    self._add_runs(branch, edge.sha256, "input", "down", depth - 1)

    def _shown(self, edge: LineageEdge) -> bool:
        # A step's captured log is an output of its run, not data: the tree leaves it out.
        step = self.run(edge.run_id).tags.get("conveyor.kind") == "step"
        return not (step and edge.name.startswith("logs/"))

    def _add_runs(self, node: Tree, sha256: str, direction: str, way: str, depth: int) -> None:
        run_ids = sorted({e.run_id for e in self.of_artifact(sha256) if e.direction == direction})
        reused = 0
        for run_id in run_ids:
            run = self.run(run_id)
            if run.tags.get("conveyor.cached") == "true":
                reused += 1
                continue
            branch = node.add(self._run_label(run))
            if (run_id, way) in self._expanded:
                branch.add("[dim](shown above)[/]")
                continue
            self._expanded.add((run_id, way))
            self._expand_run(branch, run_id, way == "up", way == "down", depth)
        if reused:
            node.add(f"[dim]+{reused} cached reuse(s)[/]")

    # -- output ------------------------------------------------------------
    @staticmethod
    def _run_label(run: Run) -> str:
        status = run.status.value
        cached = " [cyan](cached)[/]" if run.tags.get("conveyor.cached") == "true" else ""
        return (
            f"[bold]{run.name}[/] {run.id[:8]} [{_STYLE.get(status, 'white')}]{status}[/]{cached}"
        )

    def as_dict(self, kind: str, ident: str) -> dict[str, Any]:
        for run_id in {e.run_id for e in self.edges}:
            self.run(run_id)
        return {
            "root": {"type": kind, "id": ident},
            "runs": {
                r.id: {
                    "name": r.name,
                    "status": r.status.value,
                    "parent_run_id": r.parent_run_id,
                    "cached": r.tags.get("conveyor.cached") == "true",
                }
                for r in self.runs.values()
            },
            "edges": sorted(
                (
                    {
                        "run_id": e.run_id,
                        "sha256": e.sha256,
                        "direction": e.direction,
                        "name": e.name,
                    }
                    for e in self.edges
                ),
                key=lambda d: (d["run_id"], d["direction"], d["name"], d["sha256"]),
            ),
        }


def _artifact_label(edge: LineageEdge) -> str:
    name = f"{edge.name} " if edge.name else ""
    return f"{name}[dim]sha256:{edge.sha256[:12]}[/]"
