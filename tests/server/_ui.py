"""Reading UI-format workflows (what the canvas saves) without a browser: widgets, links, and the API prompt
they stand for.

UI nodes list every input, widgets included (``{"name", "widget": {"name"}, "link"}``), in definition order;
``widgets_values`` holds the widget values in that order, plus a ``control_after_generate`` value right after
each seed (our seeds are the only inputs with one).
"""
from __future__ import annotations

import copy

CONTROLLED = ("seed",)  # inputs followed by a control_after_generate widget value
UI_ONLY = ("control_after_generate", "upload")  # widget values the frontend keeps out of the API prompt (LoadImage's
# upload button is a widget input named "upload" whose value is "image")


def widget_names(node: dict) -> list[str]:
    """The names behind ``node["widgets_values"]``, in order (``control_after_generate`` after each seed)."""
    names = []
    for inp in node.get("inputs", []):
        if "widget" in inp:
            names.append(inp["name"])
            if inp["name"] in CONTROLLED:
                names.append("control_after_generate")
    return names


def widgets(node: dict) -> dict:
    """name → value for the node's widgets; fails if the value list does not fit the widget inputs."""
    names, values = widget_names(node), node.get("widgets_values", [])
    assert len(names) == len(values), f"node {node['id']} ({node['type']}): widgets {names} but values {values}"
    return dict(zip(names, values))


def links(ui: dict) -> dict[int, list]:
    """link id → [id, from node, from slot, to node, to slot, type]."""
    return {link[0]: link for link in ui["links"]}


def to_api(ui: dict) -> dict:
    """The API prompt a UI workflow stands for (inputs only: titles need the node definitions)."""
    by_id = links(ui)
    api = {}
    for node in ui["nodes"]:
        inputs = {k: v for k, v in widgets(node).items() if k not in UI_ONLY}
        for slot, inp in enumerate(node.get("inputs", [])):
            if inp.get("link") is not None:
                link = by_id[inp["link"]]
                assert (link[3], link[4]) == (node["id"], slot), f"link {link} vs node {node['id']} slot {slot}"
                inputs[inp["name"]] = [str(link[1]), link[2]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return api


def map_widgets(ui: dict, names: tuple[str, ...], mapping: dict) -> dict:
    """A copy of ``ui`` with the widgets called ``names`` mapped through ``mapping`` (unknown values kept)."""
    ui = copy.deepcopy(ui)
    for node in ui["nodes"]:
        wnames = widget_names(node)
        for i, name in enumerate(wnames):
            if name in names:
                node["widgets_values"][i] = mapping.get(node["widgets_values"][i], node["widgets_values"][i])
    return ui
