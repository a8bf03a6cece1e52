"""Drawings of a generator's graphs at the three levels (matplotlib through networkx)."""

from __future__ import annotations

from pathlib import Path

from .generator import GeneratorParams, to_dag

__all__ = ["draw_generator"]


def draw_generator(params: GeneratorParams, path: str | Path, seed: int = 0) -> Path:
    """One network's top, mid and bottom graphs (first stage, first cell, first node), as DAGs
    oriented low -> high, laid out by topological generation; written to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    from .generator import sample

    net = sample(params, seed)
    stage = net.graphs[0]
    cell = stage["cells"][0]
    graphs = [("top: cells in a stage", params.top, stage["edges"]),
              ("mid: nodes in a cell", params.mid, cell["edges"]),
              ("bottom: operations in a node", params.bottom, cell["nodes"][0])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    for ax, (title, level, edges) in zip(axes, graphs):
        preds, inputs, outputs = to_dag(level.n, edges)
        g = nx.DiGraph()
        g.add_nodes_from(range(level.n))
        g.add_edges_from((p, i) for i in range(level.n) for p in preds[i])
        g.add_node("in")
        g.add_node("out")
        g.add_edges_from(("in", i) for i in inputs)
        g.add_edges_from((o, "out") for o in outputs)
        for layer, nodes in enumerate(nx.topological_generations(g)):
            for n in nodes:
                g.nodes[n]["layer"] = layer
        pos = nx.multipartite_layout(g, subset_key="layer")
        colors = ["#dddddd" if n in ("in", "out") else "#8fb8de" for n in g.nodes]
        nx.draw_networkx(g, pos, ax=ax, node_color=colors, node_size=380, font_size=8, arrowsize=10)
        ax.set_title(f"{title}\n{level.label()}", fontsize=10)
        ax.axis("off")
    fig.suptitle(f"generator {params.key()} (network seed {seed})", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
