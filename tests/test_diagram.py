"""The process map's data (web/diagram.py): the graph the browser lays out with ELK.

The drawing itself is checked in chromium (tests/test_diagram_browser.py); here: what the
graph says about the five programmes, and that it travels escaped inside the server's SVG.
"""
from __future__ import annotations

import html
import json
import re
from dataclasses import replace

import pytest

from hexie.web.diagram import graph, render_svg
from hexie.workflows.loader import load_definitions_strict

from .web_helpers import DEFINITIONS


@pytest.fixture(scope="module")
def processes():
    return load_definitions_strict(DEFINITIONS).processes


def _edges(data, source, target):
    return [e for e in data["edges"] if e["source"] == source and e["target"] == target]


def test_states_keep_their_order_and_flags(processes):
    spec = processes["poor_mother_aid"]
    data = graph(spec, "approval", "zh")
    assert [s["id"] for s in data["states"]] == [s.name for s in spec.states]
    flags = {s["id"]: s for s in data["states"]}
    assert flags["application"]["initial"] and not flags["approval"]["initial"]
    assert flags["closed"]["final"] and flags["withdrawn"]["final"] and not flags["agreement"]["final"]
    assert [s["id"] for s in data["states"] if s["current"]] == ["approval"]
    assert flags["approval"]["label"] == "县妇联审批"
    assert graph(spec, "approval", "en")["states"][2]["label"] == "County approval"


def test_quorum_timers_and_what_can_be_done_now(processes):
    data = graph(processes["poor_mother_aid"], "approval", "zh")
    (approve,) = _edges(data, "approval", "disbursement")
    assert approve["quorum"] == 2 and "需2人同意" in approve["label"] and approve["hot"]
    assert all(e["hot"] == (e["source"] == "approval") for e in data["edges"])
    # the timer and the early visit between the same two steps: two edges, the timer's dashed
    timer, early = sorted(_edges(data, "awaiting_mid_year_visit", "mid_year_visit"), key=lambda e: not e["timer"])
    assert timer["timer"] and "180天后自动" in timer["label"] and not early["timer"] and early["label"] == "提前回访"
    (at_date,) = [e for e in _edges(data, "awaiting_year_end_visit", "year_end_visit") if e["timer"]]
    assert "年底回访日期" in at_date["label"]
    english = graph(processes["poor_mother_aid"], None, "en")
    assert any("auto after 180 days" in e["label"] for e in english["edges"])
    assert "2 approvals" in _edges(english, "approval", "disbursement")[0]["label"]


def test_self_loops_and_transitions_from_several_steps(processes):
    elder = graph(processes["elder_support"], "persuasion", "zh")
    (loop,) = _edges(elder, "persuasion", "persuasion")
    assert loop["loop"] and loop["label"] == "再次入户"
    aid = graph(processes["poor_mother_aid"], None, "zh")
    terminate = [e for e in aid["edges"] if e["target"] == "terminated"]
    assert len(terminate) == 4 and [e["label"] for e in terminate].count("终止帮扶") == 1   # written once
    assert all("终止帮扶" in e["title"] for e in terminate)                                 # hover: each


def test_a_transition_from_every_step_is_one_edge_from_any_step(processes):
    data = graph(processes["dv_complaint"], "referral", "zh")
    into = [e for e in data["edges"] if e["target"] == "emergency"]
    assert [(e["source"], e["label"], e["hot"]) for e in into] == [("*", "紧急处置", True)]
    assert data["any"] == "任一办理环节"
    withdrawn = [e for e in data["edges"] if e["target"] == "withdrawn"]      # from three of five: drawn
    assert sorted(e["source"] for e in withdrawn) == ["adjudication", "intake", "referral"]


def test_the_graph_rides_escaped_on_the_fallback_drawing(processes):
    spec = processes["poor_mother_aid"]
    state = replace(spec.states[0], label=replace(spec.states[0].label, zh='<b>申请</b>"&'))
    evil = replace(spec, states=(state,) + spec.states[1:], content_hash="evil-graph")
    svg = str(render_svg(evil, "application", "zh"))
    match = re.search(r'data-graph="([^"]*)"', svg)
    assert match and "<b>" not in svg
    assert json.loads(html.unescape(match.group(1))) == graph(evil, "application", "zh")
    assert json.loads(html.unescape(match.group(1)))["states"][0]["label"] == '<b>申请</b>"&'


def test_run_time_work_is_drawn(processes):
    """For-each states, called processes and automatic transitions (issue 15), in the graph and
    in the drawing without JavaScript."""
    dv = graph(processes["dv_complaint"], "referral", "en")
    referral = next(s for s in dv["states"] if s["id"] == "referral")
    assert referral["for_each"] == "Agencies she agrees to be referred to"
    assert referral["note"] == "for each: Agencies she agrees to be referred to"
    loan = graph(processes["microloan"], None, "zh")
    pairing = next(s for s in loan["states"] if s["id"] == "mentor_pairing")
    assert pairing["calls"]["process"] == "mentor_pairing" and pairing["note"].startswith("调用：")
    assert not any(s["for_each"] or s["calls"] for s in loan["states"] if s["id"] != "mentor_pairing")
    svg = str(render_svg(processes["dv_complaint"], None, "zh"))
    assert 'class="state for-each"' in svg and svg.count('class="marker-for-each"') == 3
    assert 'class="marker-call"' in str(render_svg(processes["microloan"], None, "zh"))


def test_automatic_transitions_are_marked(tmp_path):
    from hexie.workflows.loader import load_definitions_strict as load
    import shutil
    from .test_runtime import ROUTER
    shutil.copy(DEFINITIONS / "roles.yaml", tmp_path)
    (tmp_path / "router.yaml").write_text(ROUTER, encoding="utf-8")
    spec = load(tmp_path).processes["router"]
    data = graph(spec, None, "en")
    (big,) = _edges(data, "route", "big")
    assert big["auto"] and "automatic" in big["label"]
    (submit,) = _edges(data, "apply", "route")
    assert not submit["auto"]
    assert 'stroke-dasharray="2 3"' in str(render_svg(spec, None, "en"))
