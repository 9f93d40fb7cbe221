"""The MIME layer: one engine, the lenient readings it needs, and laziness."""

from __future__ import annotations

from processor.parse import parse
from processor.parse.mime import content_type_params, read_message

REPORT_HEAD = (
    b"From: MAILER-DAEMON@mx.example.org\nTo: bounces@sender.example\nSubject: Undelivered Mail\n"
    b'Content-Type: multipart/report; report-type=delivery-status; boundary="BB"\n\n'
)


def test_damaged_base64_body_is_read_as_far_as_it_goes() -> None:
    """A base64 body with stray characters the engine refuses still yields its text."""
    message = (
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=a\n\n--a\n"
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        b"aGVsbG8gd29y!bGQ=\n--a--\n"
    )
    root = read_message(message)
    assert [part.text for part in root.children] == ["hello world"]


def test_enclosed_original_keeps_fields_after_a_broken_fold() -> None:
    """A returned original whose Received header lost its indentation still gives its Message-ID."""
    message = REPORT_HEAD + (
        b"--BB\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        b"Final-Recipient: rfc822; bob@example.net\nAction: failed\nStatus: 5.1.1\n\n--BB\n"
        b"Content-Type: message/rfc822\n\nReceived: from a (a [192.0.2.1])\nby mx.example.org; "
        b"Mon, 1 Jan 2024 00:00:00 +0000\nSubject: Spring news\nMessage-ID: <n-1@sender.example>\n\nbody\n--BB--\n"
    )
    [event] = parse(message)
    assert event.recipient == "bob@example.net"
    assert event.original.message_id == "<n-1@sender.example>"
    assert event.original.subject == "Spring news"


def test_message_global_is_read_as_an_enclosed_message() -> None:
    """message/global (RFC 6532) is a container to the detectors, though the engine leaves it a leaf."""
    message = REPORT_HEAD + (
        b"--BB\nContent-Type: message/global-delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        b"Final-Recipient: utf-8; bob@example.net\nAction: failed\nStatus: 5.1.1\n\n--BB\n"
        b"Content-Type: message/global\n\nSubject: Gr\xc3\xbc\xc3\x9fe\nMessage-ID: <g-1@sender.example>\n\nx\n--BB--\n"
    )
    [event] = parse(message)
    assert event.original.subject == "Grüße"
    assert event.original.message_id == "<g-1@sender.example>"


def test_multipart_without_boundary_keeps_its_body_as_text() -> None:
    """A multipart whose boundary is missing goes to the lenient reading, which keeps the body."""
    root = read_message(b"From: a@example.org\nContent-Type: multipart/mixed\n\n<bob@example.net>: 550 user unknown\n")
    assert "550 user unknown" in root.text


def test_content_type_params_unquote_and_lower_case_names() -> None:
    """Parameter names are lower-cased and quoted values unquoted; the first of a repeated name wins."""
    params = content_type_params('multipart/report; Report-Type=delivery-status; boundary="a;b \\"c\\""; boundary=x')
    assert params == {"report-type": "delivery-status", "boundary": 'a;b "c"'}


def test_headers_from_grouped_values_read_as_from_the_list() -> None:
    """The engine's grouped form gives the same look-ups, length and items as the list form,
    names differing only in case included."""
    from processor.parse.mime import Headers

    grouped = {"Received": ["a", "b"], "To": ["x@example.org"], "received": ["c"], "X-Empty": []}
    listed = Headers([(name, value) for name, values in grouped.items() for value in values])
    fast = Headers.grouped(grouped)
    assert len(fast) == len(listed) == 4 and fast.items() == listed.items()
    for name in ("received", "RECEIVED", "to", "x-empty", "missing"):
        assert fast.get_all(name) == listed.get_all(name) and fast.get(name) == listed.get(name)
        assert (name in fast) == (name in listed)
    assert fast.get_all("received") == ["a", "b", "c"]
    fast.get_all("received").append("d")  # what a caller does with a list it got stays its own...
    assert grouped["Received"] == ["a", "b"]  # ...and never reaches the engine's values


def test_first_value_is_the_grouped_headers_look_up() -> None:
    """A field read straight from the engine's grouped form is what Headers.grouped gives: the
    first value of the first spelling that has one, names compared without case."""
    from processor.parse.mime import Headers, _first_value

    cases = [
        {"content-transfer-encoding": [], "Content-Transfer-Encoding": ["base64", "7bit"]},
        {"CONTENT-TRANSFER-ENCODING": ["quoted-printable"], "Content-Transfer-Encoding": ["base64"]},
        {"Content-Transfer-Encodings": ["x"], "To": ["a@example.org"]},
        {},
    ]
    for grouped in cases:
        expected = Headers.grouped(grouped).get("content-transfer-encoding")
        assert _first_value(grouped, "content-transfer-encoding") == expected
    assert [_first_value(g, "content-transfer-encoding") for g in cases] == ["base64", "quoted-printable", "", ""]


def test_parts_read_parameters_headers_and_children_on_first_use() -> None:
    """Reading a text part's body builds neither its headers nor other parts' parameters; each is
    read when asked, and the body is transfer-decoded by the field as the headers give it."""
    message = (
        b"From: a@example.org\nContent-Type: multipart/mixed; boundary=a\n\n--a\n"
        b"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: Base64 \n\n"
        b"aOlsbG8=\n--a\nContent-Type: image/png; name=x.png\nContent-Transfer-Encoding: base64\n\n"
        b"iVBORw0KGgo=\n--a--\n"
    )
    root = read_message(message)
    assert root._children is None and root._params is None  # nothing read yet
    text, image = root.children
    assert text.text == "h\xe9llo"
    assert text._headers is None and image._params is None
    assert text.headers.get("content-transfer-encoding") == "Base64 "  # the engine keeps the space
    assert image.params == {"name": "x.png"} and image.text == ""
    assert root.params == {"boundary": "a"} and root.text == ""


def test_report_reads_only_the_parameters_and_headers_it_needs() -> None:
    """The report's part list reads the parameters of a multipart/report only, and its text reads
    a text part's Content-Disposition only when an earlier text part was taken (an attached text
    after the notice is left out; the first text part is taken whatever its disposition)."""
    from processor.parse.report import Report

    message = (
        b"From: MAILER-DAEMON@mx.example.org\nContent-Type: multipart/mixed; boundary=m\n\n--m\n"
        b"Content-Type: text/plain; charset=us-ascii\nContent-Disposition: attachment\n\nThe notice.\n--m\n"
        b"Content-Type: text/plain; charset=us-ascii\nContent-Disposition: attachment; filename=a.txt\n\n"
        b"An attachment.\n--m--\n"
    )
    report = Report(read_message(message))
    notice, attached = report.root.children
    assert report.text == "The notice."
    assert notice._headers is None and attached._headers is not None
    assert report.root._params is None  # multipart/mixed: no report-type to read


def test_header_block_index_is_the_list_form() -> None:
    """A parsed block looks up as Headers over its own items does: names in any case, repeated
    fields in order, folded values unfolded and encoded words decoded."""
    from processor.parse.mime import Headers, parse_header_block

    parsed = parse_header_block(
        "\nReceived: from a\n\tby b\nSubject: =?utf-8?q?caf=C3=A9?=\nreceived: from c\nnot a field\n"
        "RECEIVED:  from d  \n\nBody: no\n"
    )
    listed = Headers(parsed.items())
    assert parsed.items() == [
        ("Received", "from a by b"), ("Subject", "caf\xe9"), ("received", "from c"), ("RECEIVED", "from d")
    ]
    assert len(parsed) == len(listed) == 4
    for name in ("received", "Subject", "body", "missing"):
        assert parsed.get_all(name) == listed.get_all(name) and (name in parsed) == (name in listed)
    assert parsed.get_all("Received") == ["from a by b", "from c", "from d"]
