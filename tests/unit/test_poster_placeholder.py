"""The placeholder poster is an SVG whose title is text, never markup."""

from __future__ import annotations

from xml.etree import ElementTree

from read_api.posters import placeholder_svg


def test_a_hostile_title_stays_text():
    svg = placeholder_svg('</text><script>alert(1)</script>"&', "full")
    root = ElementTree.fromstring(svg)
    assert b"<script" not in svg
    assert "".join(root.itertext()).startswith("</text><script>")
    assert root.get("aria-label") == '</text><script>alert(1)</script>"&'


def test_characters_xml_cannot_carry_are_dropped_and_long_titles_wrap():
    svg = placeholder_svg("Night\x00 of \ufffe" + " very long words" * 20, "thumb")
    root = ElementTree.fromstring(svg)
    assert root.get("width") == "400"
    lines = [span.text or "" for span in root.iter("{http://www.w3.org/2000/svg}tspan")]
    assert 1 < len(lines) <= 6 and lines[-1].endswith("…")
