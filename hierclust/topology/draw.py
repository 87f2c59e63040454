"""Pictures of a topology: a rich tree for terminals and a PNG via matplotlib (optional extra).

Large trees are collapsed: each group shows at most ``max_children`` children and the rest are
summarised, so a million-node file prints in a screenful.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.tree import Tree

from hierclust.topology.model import Group, Topology


def label(topology: Topology, group: Group) -> str:
    what = (
        f"{group.size} nodes {topology.hostlist(group)}"
        if group.is_leaf
        else f"{group.size} slots, {group.end_rank - group.first_rank:,} nodes"
    )
    extra = f" + {group.tiebreaker.describe()}" if group.tiebreaker else ""
    return f"[bold]{group.name}[/] [dim]tier {group.tier}[/] {what}{extra}"


def rich_tree(topology: Topology, max_children: int = 6, max_depth: int | None = None) -> Tree:
    """The group tree, at most ``max_children`` children shown per group."""
    root = Tree(label(topology, topology.root))
    stack: list[tuple[Group, Tree, int]] = [(topology.root, root, 0)]
    while stack:
        group, branch, level = stack.pop()
        if max_depth is not None and level >= max_depth and group.children:
            branch.add(f"[dim]... {len(group.children)} groups below[/]")
            continue
        children = topology.slots(group)
        shown = children[:max_children]
        pending = []
        for child in shown:
            sub = branch.add(label(topology, child))
            pending.append((child, sub, level + 1))
        if len(children) > len(shown):
            hidden = children[len(shown) :]
            nodes = sum(c.end_rank - c.first_rank for c in hidden)
            branch.add(f"[dim]... {len(hidden)} more groups ({nodes:,} nodes)[/]")
        stack.extend(reversed(pending))
    return root


def tree_json(topology: Topology, group: Group, max_children: int) -> dict[str, Any]:
    """A nested JSON view of ``group`` and its subtree, children cut at ``max_children``."""
    body: dict[str, Any] = {
        "name": group.name,
        "tier": group.tier,
        "size": group.size,
        "votes": group.votes,
        "nodes": topology.hostlist(group),
    }
    if group.tiebreaker:
        body["tiebreaker"] = group.tiebreaker.describe()
    if group.children:
        children = topology.slots(group)
        body["children"] = [tree_json(topology, c, max_children) for c in children[:max_children]]
        body["children_hidden"] = max(0, len(children) - max_children)
    return body


def save_png(topology: Topology, out: Path, max_groups: int = 400) -> int:
    """Draw the top of the tree (at most ``max_groups`` groups, breadth-first) to ``out``.

    Returns the number of groups drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn: list[Group] = []
    frontier = [topology.root]
    while frontier and len(drawn) + len(frontier) <= max_groups:
        drawn.extend(frontier)
        frontier = [c for g in frontier for c in topology.slots(g)]
    keep = {g.name for g in drawn}
    # x: leaves of the drawn tree spread evenly; a parent sits above the middle of its children.
    xs: dict[str, float] = {}
    next_x = 0.0

    def place(group: Group) -> float:
        nonlocal next_x
        kids = [c for c in topology.slots(group) if c.name in keep]
        if not kids:
            xs[group.name] = next_x
            next_x += 1.0
        else:
            positions = [place(k) for k in kids]
            xs[group.name] = sum(positions) / len(positions)
        return xs[group.name]

    place(topology.root)
    width = max(6.0, min(40.0, next_x * 0.35))
    fig, ax = plt.subplots(figsize=(width, 1.6 * topology.depth + 1.5))
    for group in drawn:
        if group.parent is not None and group.parent in keep:
            ax.plot(
                [xs[group.parent], xs[group.name]],
                [topology.groups[group.parent].tier, group.tier],
                color="0.6",
                linewidth=0.8,
                zorder=1,
            )
    colours = [
        "#4c72b0",
        "#55a868",
        "#c44e52",
        "#8172b2",
        "#ccb974",
        "#64b5cd",
        "#8c8c8c",
        "#e17c05",
    ]
    small = len(drawn) <= 40
    for group in drawn:
        ax.scatter(
            xs[group.name],
            group.tier,
            s=120 if small else 30,
            color=colours[group.tier % len(colours)],
            zorder=2,
        )
        if small:
            ax.annotate(
                f"{group.name}\n{group.size}",
                (xs[group.name], group.tier),
                textcoords="offset points",
                xytext=(0, 9),
                ha="center",
                fontsize=7,
            )
    ax.set_yticks(range(topology.depth))
    ax.set_yticklabels([f"tier {t}" for t in range(topology.depth)])
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    hidden = len(topology.by_index) - len(drawn)
    title = f"{topology.name}: {topology.num_nodes:,} nodes, {len(topology.by_index):,} groups"
    if hidden:
        title += f" ({hidden:,} lower groups not drawn)"
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return len(drawn)
