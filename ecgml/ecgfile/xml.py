"""An ``.xml`` ECG: GE MUSE (root ``RestingECG``) or HL7 aECG (root ``AnnotatedECG``).

Parsed with ``defusedxml``: entity declarations and external references are refused, a plain
``<!DOCTYPE RestingECG SYSTEM "restecg.dtd">`` line (MUSE writes one) is allowed and never
fetched. The root element decides the reader.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, parse

from ecgml.ecgfile.aecg import read_aecg
from ecgml.ecgfile.muse import read_muse
from ecgml.ecgfile.recording import EcgFileProblem, Recording


def parse_xml(path: Path) -> Element:
    """The root element of ``path``, parsed safely; ``unreadable`` / ``wrong_format`` else."""
    try:
        root = parse(
            str(path), forbid_dtd=False, forbid_entities=True, forbid_external=True
        ).getroot()
    except DefusedXmlException as err:
        raise EcgFileProblem(
            "unreadable", f"{path.name}: refused unsafe XML ({type(err).__name__})"
        ) from None
    except ParseError as err:
        raise EcgFileProblem("wrong_format", f"{path.name}: not well-formed XML ({err})") from None
    if root is None:
        raise EcgFileProblem("wrong_format", f"{path.name}: an empty XML document")
    return root


def local_name(element: Element) -> str:
    """An element's tag without its ``{namespace}``."""
    return element.tag.rsplit("}", 1)[-1] if isinstance(element.tag, str) else ""


def read(path: Path) -> Recording:
    root = parse_xml(path)
    kind = local_name(root)
    if kind == "RestingECG":
        return read_muse(root, path)
    if kind == "AnnotatedECG":
        return read_aecg(root, path)
    raise EcgFileProblem(
        "wrong_format",
        f"{path.name}: XML root <{kind}> is neither GE MUSE <RestingECG> nor HL7 <AnnotatedECG>",
    )
