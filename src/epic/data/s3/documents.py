"""S3's XML documents: writing responses and reading request bodies without trusting them."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime

from epic.data.s3.errors import S3Error

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_DOCUMENT_BYTES = 1024 * 1024


def new_document(tag: str, namespaced: bool = True) -> ElementTree.Element:
    """Start a response document; S3 puts its namespace on every document except errors."""
    root = ElementTree.Element(tag)
    if namespaced:
        root.set("xmlns", NAMESPACE)
    return root


def add(
    parent: ElementTree.Element, tag: str, text: str | int | None = None
) -> ElementTree.Element:
    """Append a child element, with text if given."""
    child = ElementTree.SubElement(parent, tag)
    if text is not None:
        child.text = str(text)
    return child


def serialise(root: ElementTree.Element) -> bytes:
    """Render a document as UTF-8 with an XML declaration."""
    return ElementTree.tostring(root, encoding="UTF-8", xml_declaration=True)


def xml_timestamp(moment: datetime) -> str:
    """Format a time as S3 does inside XML: ISO 8601 in UTC with milliseconds."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse(body: bytes, root_tag: str) -> ElementTree.Element:
    """Parse a small request document whose root must be `root_tag`, refusing DTDs and entities.

    Tags come back without their namespace, so callers match on local names.
    """
    if len(body) > MAX_DOCUMENT_BYTES:
        raise S3Error("MaxMessageLengthExceeded", "Your request was too big.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _malformed() from error
    # S3 request documents never need a DTD, an entity, a comment or CDATA, and refusing "<!"
    # outright closes every entity-expansion attack whatever the document claims to be.
    if "<!" in text or "\x00" in text:
        raise _malformed()

    parser = ElementTree.XMLParser(encoding="utf-8")  # noqa: S314 - DTDs refused just above.
    try:
        parser.feed(body)
        root = parser.close()
    except ElementTree.ParseError as error:
        raise _malformed() from error

    for element in root.iter():
        element.tag = element.tag.rpartition("}")[2]
    if root.tag != root_tag:
        raise _malformed()
    return root


def child_text(element: ElementTree.Element, tag: str) -> str | None:
    """Return the text of the first child named `tag` ("" if empty), or None if absent."""
    child = element.find(tag)
    if child is None:
        return None
    return child.text or ""


def _malformed() -> S3Error:
    """Build S3's error for a body that is not the expected XML document."""
    return S3Error(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published "
        "schema.",
    )
