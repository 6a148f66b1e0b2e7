"""Reading OFAC's SDN.XML: only digital-currency IDs that are valid Solana addresses are kept,
whatever their symbol, with the list's publish date; whatever is not OFAC's shape is refused
with a reason; no entity, external or internal, is ever resolved."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest

from refit.sanctions import sdn_file
from refit.sanctions.cli import EMPTY_TEST_LIST
from refit.sanctions.sdn_file import ListedAddress, SdnFileError
from tests.sanctions.helpers import (
    ID_NOT_AN_ADDRESS,
    LISTED,
    LISTED_UNDER_USDC,
    NOT_LISTED,
    SAMPLE,
    sample_xml,
)


def _parse(xml: str | bytes) -> sdn_file.SdnList:
    return sdn_file.parse(io.BytesIO(xml.encode() if isinstance(xml, str) else xml))


def test_the_sample_keeps_only_valid_solana_addresses_with_the_publish_date():
    seen: list[int] = []
    sdn = sdn_file.read(SAMPLE, seen.append)
    assert sdn.published_on == dt.date(2026, 12, 1)
    assert (sdn.record_count, sdn.entries) == (3, 3)
    assert sdn.addresses == [
        # Listed twice (entries 40001 and 40002): the first entry is kept.
        ListedAddress(LISTED, 40001, "EXAMPLOV, Ivan", "Digital Currency Address - SOL"),
        ListedAddress(
            LISTED_UNDER_USDC, 40002, "EXAMPLE MIXER LLC", "Digital Currency Address - USDC"
        ),
    ]
    # XBT, ETH, TRON (base58, 25 bytes) and a malformed SOL one; a passport-like ID that
    # happens to read as a Solana key is no digital-currency address.
    assert sdn.other_currency_ids == 4
    assert ID_NOT_AN_ADDRESS not in {a.address for a in sdn.addresses}
    assert sdn.sha256 == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert sum(seen) == SAMPLE.stat().st_size


@pytest.mark.parametrize(
    "root",
    [
        '<sdnList xmlns="http://tempuri.org/sdnList.xsd">',  # OFAC's older namespace
        '<sdnList xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">',  # none
        '<o:sdnList xmlns:o="https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports/XML">',
    ],
)
def test_any_namespace_reads_the_same(root):
    text = sample_xml().decode()
    start = text.index("<sdnList")
    text = text[:start] + root + text[text.index(">", start) + 1 :]
    if root.startswith("<o:"):
        text = text.replace("</sdnList>", "</o:sdnList>")
    sdn = _parse(text)
    assert [a.address for a in sdn.addresses] == [LISTED, LISTED_UNDER_USDC]
    assert sdn.published_on == dt.date(2026, 12, 1)


def test_the_shipped_empty_list_is_marked_for_tests_and_lists_nothing():
    text = EMPTY_TEST_LIST.read_text()
    assert "MADE FOR TESTS: NOT OFAC'S LIST" in text
    sdn = sdn_file.read(EMPTY_TEST_LIST)
    assert (sdn.published_on, sdn.record_count, sdn.entries) == (dt.date(2000, 1, 1), 0, 0)
    assert sdn.addresses == []


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (LISTED, True),
        (NOT_LISTED, True),
        ("11111111111111111111111111111111", True),  # the system program: 32 zero bytes
        ("1" * 33, False),  # 33 bytes
        (LISTED[:30], False),  # 22 bytes
        (LISTED[:-1] + "0", False),  # not base58
        (" " + LISTED, False),  # compared exactly: one written form only
        ("0x7F367cC41522cE07553e823bf3be79A889DEbe1B", False),
        ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", False),
        ("", False),
    ],
)
def test_what_a_solana_address_is(value, valid):
    assert sdn_file.is_solana_address(value) is valid


def test_an_external_entity_is_refused_and_never_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    xml = (
        sample_xml()
        .decode()
        .replace(
            '<?xml version="1.0" standalone="yes"?>',
            f'<?xml version="1.0"?>\n<!DOCTYPE sdnList [<!ENTITY xxe SYSTEM "file://{secret}">]>',
        )
        .replace(LISTED_UNDER_USDC, "&xxe;")
    )
    with pytest.raises(SdnFileError, match="document type declaration") as refused:
        _parse(xml)
    assert "TOP-SECRET" not in str(refused.value)


def test_an_external_dtd_and_entity_expansion_are_refused():
    external = '<?xml version="1.0"?><!DOCTYPE sdnList SYSTEM "http://127.0.0.1:9/x.dtd"><sdnList/>'
    with pytest.raises(SdnFileError, match="document type declaration"):
        _parse(external)
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE sdnList [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><sdnList>&b;</sdnList>'
    )
    with pytest.raises(SdnFileError, match="document type declaration"):
        _parse(laughs)
    # Without a declaration, a reference is an undefined entity: not well-formed.
    with pytest.raises(SdnFileError, match="undefined entity"):
        _parse(sample_xml().decode().replace(LISTED, "&xxe;"))


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        ("", "not well-formed XML: no element found"),
        ("this is not xml", "not well-formed XML: syntax error, line 1 column 0"),
        (sample_xml()[:2000], "not well-formed XML"),  # a download cut short
        ('<?xml version="1.0"?><consolidatedList/>', "root element is <consolidatedList>"),
        ("<sdnList><sdnEntry/></sdnList>", "no <publshInformation><Publish_Date>"),
        (
            sample_xml().decode().replace("12/01/2026", "2026-12-01"),
            "Publish_Date '2026-12-01' is not a date as OFAC writes it",
        ),
        (
            sample_xml().decode().replace("<Record_Count>3</Record_Count>", ""),
            "no numeric <publshInformation><Record_Count>",
        ),
        (
            sample_xml().decode().replace("<uid>40001</uid>", ""),
            f"the entry listing {LISTED} has no numeric <uid>",
        ),
    ],
)
def test_what_is_not_an_sdn_list_is_refused_with_its_reason(xml, reason):
    with pytest.raises(SdnFileError) as refused:
        _parse(xml)
    assert reason in str(refused.value)


def test_a_missing_file_is_a_refusal_not_a_traceback(tmp_path):
    with pytest.raises(SdnFileError, match="No such file"):
        sdn_file.read(tmp_path / "SDN.XML")
